package provider

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
)

func TestNormalizeRecord(t *testing.T) {
	reg := Default()
	payload := `{"type":"review.upserted","data":{"review_id":"r1","version":2,"updated_at":"2026-11-20T10:00:00Z","movie":{"imdb_id":"tt0111161","title":"x"}}}`
	env := func(prov, p string) []byte {
		b, _ := json.Marshal(envelope.Raw{EventID: "e1", Provider: prov, Source: envelope.SourcePoll,
			ReceivedAt: time.Unix(0, 0).UTC(), DeliveryID: "d", Payload: json.RawMessage(p)})
		return b
	}
	cases := []struct {
		name, key string
		value     []byte
		reason    Reason
	}{
		{"ok", "generic:r1", env("generic", payload), ""},
		{"not an envelope", "generic:r1", []byte(`{"x":1}`), ReasonInvalidEnvelope},
		{"unknown provider", "nosuch:r1", env("nosuch", payload), ReasonUnknownProv},
		{"invalid payload", "generic:r1", env("generic", `{"type":"review.upserted","data":{"review_id":"r1"}}`), ReasonInvalidField},
		{"key mismatch", "generic:other", env("generic", payload), ReasonKeyMismatch},
	}
	for _, c := range cases {
		n := reg.NormalizeRecord([]byte(c.key), c.value, time.Now())
		if n.Reason != c.reason || (c.reason == "") != (n.Err == nil) {
			t.Errorf("%s: reason %q err %v, want reason %q", c.name, n.Reason, n.Err, c.reason)
		}
		if c.reason == "" && (n.Event.Review.ID != "generic:r1" || n.Provider != "generic") {
			t.Errorf("%s: event %+v provider %q", c.name, n.Event, n.Provider)
		}
	}
}
