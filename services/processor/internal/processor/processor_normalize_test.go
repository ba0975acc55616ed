package processor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

var (
	t0       = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	accepted = time.Date(2026, 11, 20, 10, 0, 1, 500, time.UTC)
)

// upsert is a generic provider event.
func upsert(id string, version int64, rating float64) string {
	return `{"type":"review.upserted","data":{"review_id":"` + id + `","version":` + itoa(version) +
		`,"updated_at":"2026-11-20T10:00:00Z","movie":{"imdb_id":"tt0111161","title":"The Shawshank Redemption"},` +
		`"author":"Ann","body":"v` + itoa(version) + `","rating":{"value":` + ftoa(rating) + `,"scale":10}}}`
}

func deleted(id string, version int64) string {
	return `{"type":"review.deleted","data":{"review_id":"` + id + `","version":` + itoa(version) + `,"updated_at":"2026-11-21T00:00:00Z"}}`
}

func itoa(n int64) string   { b, _ := json.Marshal(n); return string(b) }
func ftoa(f float64) string { b, _ := json.Marshal(f); return string(b) }

// rawMessage is the reviews.raw.v1 record of a generic event, as the
// receiver writes it.
func rawMessage(t testing.TB, prov, id, payload, eventID string) kafka.Message {
	t.Helper()
	raw := envelope.Raw{EventID: eventID, Provider: prov, Source: envelope.SourceWebhook, ReceivedAt: t0,
		DeliveryID: "msg_" + eventID, Payload: json.RawMessage(payload)}
	m, err := raw.Message(id, accepted)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNormalize(t *testing.T) {
	p := &Processor{adapters: provider.Default()}
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	good := rawMessage(t, "generic", "r1", upsert("r1", 3, 8), "evt_1")
	noHeader := good
	noHeader.Headers = nil
	cases := []struct {
		name     string
		msg      kafka.Message
		reason   string // "" when it must normalize
		provider string
		op       review.Op
	}{
		{"upsert", good, "", "generic", review.OpUpsert},
		{"delete without movie", rawMessage(t, "generic", "r1", deleted("r1", 4), "evt_2"), "", "generic", review.OpDelete},
		{"no accepted-at header: received_at is used", noHeader, "", "generic", review.OpUpsert},
		{"value not JSON", kafka.Message{Key: []byte("generic:r1"), Value: []byte("\x00garbage")}, ReasonInvalidEnvelope, "unknown", ""},
		{"null value", kafka.Message{Key: []byte("generic:r1")}, ReasonInvalidEnvelope, "unknown", ""},
		{"envelope without provider", kafka.Message{Key: []byte("x"), Value: []byte(`{"event_id":"e","source":"poll","payload":{}}`)}, ReasonInvalidEnvelope, "unknown", ""},
		{"envelope with unknown source", kafka.Message{Key: []byte("x"), Value: []byte(`{"event_id":"e","provider":"generic","source":"email","payload":{}}`)}, ReasonInvalidEnvelope, "unknown", ""},
		{"unknown provider", rawMessage(t, "nosuch", "r1", upsert("r1", 1, 5), "evt_3"), ReasonUnknownProvider, "unknown", ""},
		{"payload of an unknown shape", rawMessage(t, "generic", "r1", `{"type":"review.liked","data":{}}`, "evt_4"), string(provider.ReasonUnknownShape), "generic", ""},
		{"payload is a JSON string", rawMessage(t, "generic", "r1", `"hello"`, "evt_5"), string(provider.ReasonUnknownShape), "generic", ""},
		{"invalid field", rawMessage(t, "generic", "r1", strings.Replace(upsert("r1", 1, 5), `"version":1`, `"version":0`, 1), "evt_6"), string(provider.ReasonInvalidField), "generic", ""},
		{"bad movie id", rawMessage(t, "generic", "r1", strings.Replace(upsert("r1", 1, 5), "tt0111161", "nm0000001", 1), "evt_7"), string(provider.ReasonInvalidField), "generic", ""},
		{"key is not the canonical id", rawMessage(t, "generic", "r2", upsert("r1", 1, 5), "evt_8"), ReasonKeyMismatch, "generic", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := p.normalizeOne(c.msg, now)
			if r.provider != c.provider {
				t.Errorf("provider label %q, want %q", r.provider, c.provider)
			}
			if c.reason != "" {
				if !r.failed() || r.reason != c.reason {
					t.Fatalf("reason %q (err %v), want %q", r.reason, r.err, c.reason)
				}
				return
			}
			if r.failed() {
				t.Fatalf("failed: %s: %v", r.reason, r.err)
			}
			if r.event.Op != c.op || r.event.Review.ID != "generic:r1" || !r.event.Review.IngestedAt.Equal(now) {
				t.Fatalf("event %+v", r.event)
			}
			want := accepted
			if c.msg.Headers == nil {
				want = t0
			}
			if !r.acceptedAt.Equal(want) {
				t.Fatalf("acceptedAt %v, want %v", r.acceptedAt, want)
			}
			if envelope.Header(c.msg, kafkax.HeaderEventID) != "" && r.raw.EventID == "" {
				t.Fatal("envelope not kept")
			}
		})
	}
}
