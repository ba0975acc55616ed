package tests

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/schemas"
)

const upsertEvent = `{"type":"review.upserted","data":{"review_id":"r-1","version":3,
 "updated_at":"2026-11-20T10:00:00+01:00","movie":{"imdb_id":"tt0111161","title":"The Shawshank Redemption"},
 "author":"Ann","title":"Great","body":"Loved it","rating":{"value":4.5,"scale":5},"language":"en-us",
 "url":"https://example.com/r-1"}}`

// The records the code builds must match the published schemas.
func TestProducedRecordsMatchSchemas(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	ev, err := provider.Generic{}.Normalize([]byte(upsertEvent), now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ev.Marshal()
	if err := schemas.Validate(schemas.NormalizedEvent, b); err != nil {
		t.Errorf("normalized upsert: %v\n%s", err, b)
	}
	del, err := provider.Generic{}.Normalize([]byte(`{"type":"review.deleted","data":{"review_id":"r-1","version":4,"updated_at":"2026-11-21T00:00:00Z"}}`), now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = del.Marshal()
	if err := schemas.Validate(schemas.NormalizedEvent, b); err != nil {
		t.Errorf("normalized delete: %v\n%s", err, b)
	}
	rb, _ := json.Marshal(ev.Review)
	if err := schemas.Validate(schemas.Review, rb); err != nil {
		t.Errorf("review: %v", err)
	}

	raw := envelope.Raw{EventID: envelope.EventID("generic", "msg_1", 0), Provider: "generic", Source: envelope.SourceWebhook,
		ReceivedAt: now, DeliveryID: "msg_1", Payload: json.RawMessage(upsertEvent)}
	rawb, _ := json.Marshal(raw)
	if err := schemas.Validate(schemas.RawEnvelope, rawb); err != nil {
		t.Errorf("raw envelope: %v", err)
	}

	for _, rec := range [][]byte{[]byte(`{"not":"valid review"}`), []byte("plain \x00 bytes")} {
		dl := envelope.NewDeadLetter(envelope.StageProcessor, "invalid_field", errors.New("data.version must be >= 1"), "generic:r-1", rec, now)
		b, _ := dl.Encode()
		if err := schemas.Validate(schemas.DeadLetter, b); err != nil {
			t.Errorf("dead letter (%s): %v", dl.RecordEncoding, err)
		}
		if string(dl.RecordBytes()) != string(rec) {
			t.Errorf("dead letter lost the original bytes: %q != %q", dl.RecordBytes(), rec)
		}
	}

	sr := envelope.SyncRequest{RequestID: "req_1", Kind: envelope.SyncRefresh, MovieID: "tt0111161", RequestedAt: now}
	b, _ = json.Marshal(sr)
	if err := schemas.Validate(schemas.SyncRequest, b); err != nil {
		t.Errorf("sync request: %v", err)
	}
}

// The schemas must reject what breaks the contract, or the test above proves nothing.
func TestSchemasRejectBadRecords(t *testing.T) {
	bad := []struct{ schema, doc, why string }{
		{schemas.NormalizedEvent, `{"op":"merge","review":{}}`, "unknown op"},
		{schemas.Review, `{"id":"generic:1","provider":"generic","external_id":"1","movie_id":"tt1","author":"","rating":101,"title":"","body":"","language":"","url":"","version":1,"source_updated_at":"2026-01-01T00:00:00Z","ingested_at":"2026-01-01T00:00:00Z"}`, "rating above 100 and short movie id"},
		{schemas.Review, `{"id":"generic:1"}`, "required fields missing"},
		{schemas.RawEnvelope, `{"event_id":"e","provider":"generic","source":"email","received_at":"2026-01-01T00:00:00Z","delivery_id":"d","payload":{}}`, "unknown source"},
		{schemas.RawEnvelope, `{"event_id":"e","provider":"generic","source":"poll","received_at":"yesterday","delivery_id":"d","payload":{}}`, "bad time"},
		{schemas.SyncRequest, `{"request_id":"r","kind":"refresh","requested_at":"2026-01-01T00:00:00Z"}`, "refresh without movie"},
	}
	for _, b := range bad {
		err := schemas.Validate(b.schema, []byte(b.doc))
		if err == nil {
			t.Errorf("%s accepted a document with %s", b.schema, b.why)
		} else if !strings.Contains(err.Error(), b.schema) {
			t.Errorf("error does not name the schema: %v", err)
		}
	}
}
