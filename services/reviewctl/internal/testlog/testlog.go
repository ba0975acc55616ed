// Package testlog makes reviews.raw.v1 records of the generic provider for
// reviewctl's tests: a review's payload at a version, and its raw record as
// the receiver writes it. Only tests import it.
package testlog

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// T0 is the time the records are received at; version v of a review was
// updated v minutes later.
var T0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// GenericPayload is a generic provider event of review id at version v.
func GenericPayload(id string, v int64, deleted bool, body string) []byte {
	typ := provider.GenericUpserted
	if deleted {
		typ = provider.GenericDeleted
	}
	d := provider.GenericData{
		ReviewID: id, Version: v, UpdatedAt: T0.Add(time.Duration(v) * time.Minute).Format(time.RFC3339Nano),
		Movie:  &provider.GenericMovie{ImdbID: "tt0111161", Title: "The Shawshank Redemption"},
		Author: "critic " + id, Title: fmt.Sprintf("take %d", v), Body: body,
		Rating: &provider.GenericRating{Value: float64(v % 5), Scale: 5}, Language: "en",
	}
	b, _ := json.Marshal(provider.GenericEvent{Type: typ, Data: d})
	return b
}

// RawMessage is the reviews.raw.v1 record of a generic payload; it panics
// if the envelope cannot be encoded.
func RawMessage(id string, v int64, deleted bool, body, eventID string) kafka.Message {
	raw := envelope.Raw{EventID: eventID, Provider: "generic", Source: envelope.SourceWebhook,
		ReceivedAt: T0, DeliveryID: "msg_" + eventID, Payload: GenericPayload(id, v, deleted, body)}
	m, err := raw.Message(id, T0)
	if err != nil {
		panic(err)
	}
	return m
}
