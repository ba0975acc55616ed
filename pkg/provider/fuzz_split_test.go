package provider_test

import (
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// FuzzSplitAndNormalizeAgree: for any delivery body of any provider, the
// receiver's split and the processor's normalization agree. Split refuses
// with a typed reason or yields events, each of which normalizes to an
// event review.Validate accepts, or is refused alone as field_too_long;
// nothing else may pass the receiver and then fail in the processor.
func FuzzSplitAndNormalizeAgree(f *testing.F) {
	for _, seed := range []string{
		`{"type":"review.upserted","data":{"review_id":"r","version":1,"updated_at":"2026-11-20T10:00:00Z","movie":{"imdb_id":"tt0111161","title":"M"}}}`,
		`{"events":[{"type":"review.deleted","data":{"review_id":"r","version":2,"updated_at":"2026-11-20T10:00:00Z"}}]}`,
		`{"notifications":[{"critiqueId":"c","rev":1,"modifiedMs":1763636399123,"film":{"imdb":"tt0068646","name":"F"}}]}`,
		`[{"event":"post.edited","post":{"uid":"u","revision":1,"edited":"2026-11-20 10:00:00","title_ref":{"imdb":"tt0133093","label":"L"}}}]`,
		"{\"type\":\"review.upserted\",\"data\":{\"author\":\"Jos\xe9\"}}",
		``, `null`, `[]`, `{"events":[]}`,
	} {
		for _, name := range []string{"generic", "cinescore", "reelpulse"} {
			f.Add(name, []byte(seed))
		}
	}
	reg := provider.Default()
	f.Fuzz(func(t *testing.T, name string, body []byte) {
		if _, ok := reg.Get(name); !ok {
			return
		}
		d, err := reg.SplitDelivery(name, "msg_fuzz", envelope.SourceWebhook, body, time.Unix(1e9, 0))
		if err != nil {
			if provider.ReasonOf(err) == "" {
				t.Fatalf("split refused without a reason: %v", err)
			}
			return
		}
		for i, m := range d.Messages {
			n := reg.NormalizeRecord(m.Key, m.Value, time.Unix(1e9, 0))
			switch {
			case n.Err == nil:
				if err := review.Validate(n.Event); err != nil {
					t.Fatalf("event %d normalized to an event Validate refuses: %v", i, err)
				}
			case n.Reason != provider.ReasonFieldTooLong:
				t.Fatalf("event %d passed the receiver, then the processor refused it: %s %v", i, n.Reason, n.Err)
			}
		}
	})
}
