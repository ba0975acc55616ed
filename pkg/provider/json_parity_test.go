package provider_test

import (
	"bytes"
	stdjson "encoding/json"
	"reflect"
	"testing"
	"time"

	fastjson "github.com/segmentio/encoding/json"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// FuzzJSONParity holds pkg/jsonx to its promise: on every record type of
// the per-review path, input the fast decoder accepts decodes to exactly
// what encoding/json decodes (jsonx falls back to encoding/json on the
// rest), and what it decodes encodes to the same bytes.
//
//	go test ./provider -run '^$' -fuzz FuzzJSONParity -fuzztime 60s
func FuzzJSONParity(f *testing.F) {
	for _, seeds := range fuzzSeeds {
		for _, s := range seeds {
			f.Add([]byte(s))
		}
	}
	at := time.Date(2026, 11, 23, 9, 0, 0, 123456789, time.UTC)
	raw := envelope.Raw{EventID: "generic:msg_1:0", Provider: "generic", Source: envelope.SourceWebhook,
		ReceivedAt: at, DeliveryID: "msg_1", Payload: stdjson.RawMessage(fuzzSeeds["generic"][0])}
	if m, err := raw.Message("r1", at); err == nil {
		f.Add(m.Value)
	}
	rating := 85
	ev := review.Event{Op: review.OpUpsert, Review: review.Review{ID: "generic:r1", Provider: "generic", ExternalID: "r1",
		MovieID: "tt0111161", Author: "A <b>&amp;</b>", Rating: &rating, Title: "T\u2028", Body: "é\u00a0\n",
		Language: "en", URL: "https://x.example/?a=1&b=2", Version: 3, SourceUpdatedAt: at, IngestedAt: at}}
	if b, err := stdjson.Marshal(ev); err == nil {
		f.Add(b)
	}
	if b, err := stdjson.Marshal(dedupe.EntryOf(ev, 42)); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"op":"upsert","review":{"id":"a","rating":1e2,"version":1.0,"title":"\ud800"}}`))
	f.Add([]byte("{\"type\":\"review.upserted\",\"TYPE\":\"x\",\"data\":{\"review_id\":\"\xff\"}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parity[provider.GenericEvent](t, b)
		parity[provider.CinescoreDelivery](t, b)
		parity[provider.CinescoreNotification](t, b)
		parity[[]provider.ReelpulseChange](t, b)
		parity[envelope.Raw](t, b)
		parity[review.Event](t, b)
		parity[dedupe.Entry](t, b)
	})
}

// parity decodes b into a T with both decoders and, when the fast one
// accepts it, requires encoding/json to accept it too, with equal values
// that encode to equal bytes.
func parity[T any](t *testing.T, b []byte) {
	t.Helper()
	var fast, std T
	fastErr := fastjson.Unmarshal(b, &fast)
	stdErr := stdjson.Unmarshal(b, &std)
	if fastErr != nil {
		return // jsonx answers with encoding/json's decode
	}
	if stdErr != nil {
		t.Fatalf("%T: the fast decoder accepts %q, encoding/json refuses it: %v", std, b, stdErr)
	}
	if !reflect.DeepEqual(fast, std) {
		t.Fatalf("%T: %q decodes to\n%#v\nnot\n%#v", std, b, fast, std)
	}
	fb, fastErr := fastjson.Marshal(fast)
	sb, stdErr := stdjson.Marshal(std)
	if (fastErr == nil) != (stdErr == nil) || !bytes.Equal(fb, sb) {
		t.Fatalf("%T: encodes to %q (%v), encoding/json to %q (%v)", std, fb, fastErr, sb, stdErr)
	}
}
