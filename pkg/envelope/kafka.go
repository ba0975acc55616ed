package envelope

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// Message turns a raw envelope into its reviews.raw.v1 record, keyed
// "{provider}:{review_id}", with the event id, source and acceptance time
// as headers.
func (r Raw) Message(reviewID string, acceptedAt time.Time) (kafka.Message, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode raw envelope: %w", err)
	}
	return kafka.Message{
		Key:   []byte(r.Provider + ":" + reviewID),
		Value: b,
		Headers: []kafka.Header{
			{Key: kafkax.HeaderEventID, Value: []byte(r.EventID)},
			{Key: kafkax.HeaderSource, Value: []byte(r.Source)},
			{Key: kafkax.HeaderAccepted, Value: []byte(acceptedAt.UTC().Format(time.RFC3339Nano))},
		},
	}, nil
}

// Message turns a dead letter into its reviews.dlq.v1 record.
func (d DeadLetter) Message() (kafka.Message, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode dead letter: %w", err)
	}
	return kafka.Message{Key: []byte(d.Key), Value: b, Headers: []kafka.Header{
		{Key: "stage", Value: []byte(d.Stage)}, {Key: "reason", Value: []byte(d.Reason)},
	}}, nil
}

// Header returns the value of the named header of m, or "".
func Header(m kafka.Message, name string) string {
	for _, h := range m.Headers {
		if h.Key == name {
			return string(h.Value)
		}
	}
	return ""
}
