package envelope

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// Raw.Message writes the JSON value json.Marshal would, keeps the payload
// byte for byte, and ParseRaw reads it back.
func TestRawMessageEncodesLikeMarshal(t *testing.T) {
	at := time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC)
	for _, payload := range []string{
		`{"type":"review.upserted","data":{"review_id":"r1","body":"caf\u00e9 \"quoted\" <b>"}}`,
		"{\n  \"type\": \"review.deleted\",\n  \"data\": {\"review_id\": \"r2\"}\n}",
		`[1,2,3]`,
		``,
	} {
		r := Raw{EventID: "evt_1", Provider: "generic", Source: SourceWebhook, ReceivedAt: at,
			DeliveryID: "msg_\"odd\"\u2028", Payload: json.RawMessage(payload)}
		m, err := r.Message("r1", at)
		if err != nil {
			t.Fatalf("Message: %v", err)
		}
		if !json.Valid(m.Value) {
			t.Fatalf("payload %q: record is not JSON: %s", payload, m.Value)
		}
		if payload != "" {
			// The same JSON value as json.Marshal's (which also
			// HTML-escapes inside the payload, and compacts it).
			want, _ := json.Marshal(r)
			var got, exp any
			_ = json.Unmarshal(m.Value, &got)
			_ = json.Unmarshal(want, &exp)
			if !reflect.DeepEqual(got, exp) {
				t.Errorf("payload %q: got %s, json.Marshal gives %s", payload, m.Value, want)
			}
		}
		if payload == "" {
			continue // ParseRaw refuses an envelope without a payload
		}
		back, err := ParseRaw(m.Value)
		if err != nil {
			t.Fatalf("ParseRaw: %v", err)
		}
		if string(back.Payload) != payload || back.DeliveryID != r.DeliveryID || !back.ReceivedAt.Equal(at) || back.EventID != r.EventID {
			t.Errorf("round trip: got %+v, want %+v", back, r)
		}
	}
}
