package provider_test

import (
	"errors"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// Fuzz targets for every provider's Split and Normalize: outside input must
// never panic, every error must be a permanent *provider.Error, and what
// succeeds must be coherent (split changes normalize to their own key,
// normalized events are valid canonical reviews that encode).
//
//	go test ./provider -run '^$' -fuzz FuzzCinescoreNormalize -fuzztime 30s

var fuzzSeeds = map[string][]string{
	"generic": {
		`{"type":"review.upserted","data":{"review_id":"r1","version":1,"updated_at":"2026-11-20T10:00:00Z","movie":{"imdb_id":"tt0111161","title":"x"},"rating":{"value":9,"scale":10},"language":"en","url":"https://x.example/r1"}}`,
		`{"type":"review.deleted","data":{"review_id":"r1","version":2,"updated_at":"2026-11-20T10:00:00+02:00"}}`,
		`{"events":[{"type":"review.deleted","data":{"review_id":"r1","version":2,"updated_at":"2026-11-20T10:00:00Z"}}]}`,
		`{"type":"review.upserted","data":{"review_id":"r1","version":1,"updated_at":"9999-12-31T23:59:59-01:00","movie":{"imdb_id":"tt0111161"}}}`,
		`{"events":[]}`, `null`, `[]`, `{}`,
	},
	"cinescore": {
		`{"critiqueId":"cs-1","rev":2,"modifiedMs":1763636399123,"film":{"imdb":"tt0068646","name":"x"},"critic":{"name":"a"},"stars":8.5,"lang":"en","permalink":"https://c.example/1"}`,
		`{"critiqueId":"cs-1","rev":3,"modifiedMs":1763636399123,"removed":true}`,
		`{"notifications":[{"critiqueId":"cs-1","rev":3,"modifiedMs":1,"removed":true}]}`,
		`{"critiqueId":"cs-1","rev":1e3,"modifiedMs":253402300799999,"film":{"imdb":"tt0068646"},"stars":1e308}`,
		`{"notifications":null}`, `null`, `[]`, `{}`,
	},
	"reelpulse": {
		`{"event":"post.edited","post":{"uid":"rp_1","revision":4,"edited":"2026-11-20 10:00:00","title_ref":{"imdb":"tt0133093"},"score":"B+","locale":"en_US","link":"https://r.example/p"}}`,
		`{"event":"post.retracted","post":{"uid":"rp_1","revision":5,"edited":"2026-11-20 10:00:00"}}`,
		`[{"event":"post.published","post":{"uid":"rp_1","revision":1,"edited":"0000-01-01 00:00:00","title_ref":{"imdb":"tt0133093"},"score":"99.9%"}}]`,
		`[{"event":"post.published","post":{"uid":"rp_1","revision":1,"edited":"9999-12-31 23:59:59.999999999","title_ref":{"imdb":"tt0133093"},"score":"0x1p-2%"}}]`,
		`[]`, `null`, `{}`, `[null]`,
	},
}

func adapterOf(t testing.TB, name string) provider.Adapter {
	a, ok := provider.Default().Get(name)
	if !ok {
		t.Fatalf("no adapter %s", name)
	}
	return a
}

func fuzzSplit(f *testing.F, name string) {
	for _, s := range fuzzSeeds[name] {
		f.Add([]byte(s))
	}
	a := adapterOf(f, name)
	f.Fuzz(func(t *testing.T, body []byte) {
		changes, err := a.Split(body)
		if err != nil {
			requirePermanent(t, err)
			return
		}
		if len(changes) == 0 || len(changes) > provider.MaxEventsPerDelivery {
			t.Fatalf("%d changes without an error", len(changes))
		}
		for i, c := range changes {
			ev, err := a.Normalize(c.Payload, time.Unix(0, 0))
			if err != nil {
				t.Fatalf("change %d split but does not normalize: %v", i, err)
			}
			if ev.Review.ID != review.Key(name, c.ReviewID) {
				t.Fatalf("change %d: split id %q, normalized id %q", i, c.ReviewID, ev.Review.ID)
			}
		}
	})
}

func fuzzNormalize(f *testing.F, name string) {
	for _, s := range fuzzSeeds[name] {
		f.Add([]byte(s))
	}
	a := adapterOf(f, name)
	f.Fuzz(func(t *testing.T, payload []byte) {
		ev, err := a.Normalize(payload, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		if err != nil {
			requirePermanent(t, err)
			return
		}
		requireCanonical(t, name, ev)
		again, err := a.Normalize(payload, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		if err != nil || review.ContentHash(again.Op, again.Review) != review.ContentHash(ev.Op, ev.Review) {
			t.Fatalf("normalizing twice differs: %v", err)
		}
	})
}

func requirePermanent(t *testing.T, err error) {
	t.Helper()
	var pe *provider.Error
	if !errors.As(err, &pe) || err != error(pe) {
		t.Fatalf("error %v (%T) is not a *provider.Error", err, err)
	}
	if pe.Reason == "" || pe.Msg == "" {
		t.Fatalf("error without reason or message: %#v", pe)
	}
}

func requireCanonical(t *testing.T, name string, ev review.Event) {
	t.Helper()
	r := ev.Review
	if ev.Op != review.OpUpsert && ev.Op != review.OpDelete {
		t.Fatalf("op %q", ev.Op)
	}
	if r.Provider != name || r.ID != review.Key(name, r.ExternalID) || r.ExternalID == "" {
		t.Fatalf("id %q provider %q external id %q", r.ID, r.Provider, r.ExternalID)
	}
	if r.Version < 1 {
		t.Fatalf("version %d", r.Version)
	}
	if r.SourceUpdatedAt.Location() != time.UTC || r.IngestedAt.Location() != time.UTC {
		t.Fatalf("times not in UTC: %v %v", r.SourceUpdatedAt, r.IngestedAt)
	}
	if r.Rating != nil && (*r.Rating < 0 || *r.Rating > 100) {
		t.Fatalf("rating %d outside 0..100", *r.Rating)
	}
	if ev.Op == review.OpUpsert && !review.ValidMovieID(r.MovieID) {
		t.Fatalf("upsert with movie id %q", r.MovieID)
	}
	if len(r.Body) > provider.MaxBodyChars {
		t.Fatalf("body of %d bytes", len(r.Body))
	}
	for _, s := range []string{r.Author, r.Title, r.Body} {
		if review.CleanText(s) != s {
			t.Fatalf("text not clean: %q", s)
		}
	}
	if _, err := ev.Marshal(); err != nil {
		t.Fatalf("normalized event does not encode: %v", err)
	}
}

func FuzzGenericSplit(f *testing.F)       { fuzzSplit(f, "generic") }
func FuzzGenericNormalize(f *testing.F)   { fuzzNormalize(f, "generic") }
func FuzzCinescoreSplit(f *testing.F)     { fuzzSplit(f, "cinescore") }
func FuzzCinescoreNormalize(f *testing.F) { fuzzNormalize(f, "cinescore") }
func FuzzReelpulseSplit(f *testing.F)     { fuzzSplit(f, "reelpulse") }
func FuzzReelpulseNormalize(f *testing.F) { fuzzNormalize(f, "reelpulse") }
