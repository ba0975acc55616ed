package provider_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// cs builds a cinescore notification from a base upsert with edits applied
// to its generic map form, so each case states only what differs.
func cs(edit func(m map[string]any)) string {
	m := map[string]any{
		"critiqueId": "cs-000042",
		"rev":        2,
		"modifiedMs": 1763636399123,
		"film":       map[string]any{"imdb": "tt0068646", "name": "The Godfather"},
		"critic":     map[string]any{"name": "Ann Lee"},
		"headline":   "An offer",
		"text":       "Great.\nReally.",
		"stars":      8.5,
		"lang":       "en-gb",
		"permalink":  "https://cinescore.example/critiques/cs-000042",
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func intp(v int) *int { return &v }

func TestCinescoreNormalize(t *testing.T) {
	ingested := time.Date(2026, 11, 20, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	modified := time.Date(2025, 11, 20, 10, 59, 59, 123e6, time.UTC)
	full := review.Review{
		ID: "cinescore:cs-000042", Provider: "cinescore", ExternalID: "cs-000042", MovieID: "tt0068646",
		Author: "Ann Lee", Rating: intp(85), Title: "An offer", Body: "Great.\nReally.", Language: "en-GB",
		URL: "https://cinescore.example/critiques/cs-000042", Version: 2,
		SourceUpdatedAt: modified, IngestedAt: ingested.UTC(),
	}
	with := func(f func(r *review.Review)) review.Review { r := full; f(&r); return r }
	tests := []struct {
		name    string
		payload string
		op      review.Op
		want    review.Review
		reason  provider.Reason
	}{
		{"full upsert", cs(nil), review.OpUpsert, full, ""},
		{"no rating", cs(func(m map[string]any) { delete(m, "stars") }), review.OpUpsert, with(func(r *review.Review) { r.Rating = nil }), ""},
		{"null rating", cs(func(m map[string]any) { m["stars"] = nil }), review.OpUpsert, with(func(r *review.Review) { r.Rating = nil }), ""},
		{"zero stars", cs(func(m map[string]any) { m["stars"] = 0 }), review.OpUpsert, with(func(r *review.Review) { r.Rating = intp(0) }), ""},
		{"ten stars", cs(func(m map[string]any) { m["stars"] = 10 }), review.OpUpsert, with(func(r *review.Review) { r.Rating = intp(100) }), ""},
		{"half star rounds half up", cs(func(m map[string]any) { m["stars"] = 0.5 }), review.OpUpsert, with(func(r *review.Review) { r.Rating = intp(5) }), ""},
		{"stars above scale", cs(func(m map[string]any) { m["stars"] = 10.5 }), "", review.Review{}, provider.ReasonInvalidField},
		{"negative stars", cs(func(m map[string]any) { m["stars"] = -0.5 }), "", review.Review{}, provider.ReasonInvalidField},
		{"stars not in halves", cs(func(m map[string]any) { m["stars"] = 7.3 }), "", review.Review{}, provider.ReasonInvalidField},
		{"stars as string", cs(func(m map[string]any) { m["stars"] = "8" }), "", review.Review{}, provider.ReasonInvalidField},
		{"minimal upsert", `{"critiqueId":"c1","rev":1,"modifiedMs":1,"film":{"imdb":"tt0000001"}}`, review.OpUpsert,
			review.Review{ID: "cinescore:c1", Provider: "cinescore", ExternalID: "c1", MovieID: "tt0000001", Version: 1,
				SourceUpdatedAt: time.UnixMilli(1).UTC(), IngestedAt: ingested.UTC()}, ""},
		{"removed flag is a delete", cs(func(m map[string]any) { m["removed"] = true; m["rev"] = 3 }), review.OpDelete,
			review.Review{ID: "cinescore:cs-000042", Provider: "cinescore", ExternalID: "cs-000042", MovieID: "tt0068646",
				Version: 3, SourceUpdatedAt: modified, IngestedAt: ingested.UTC()}, ""},
		{"delete without film", `{"critiqueId":"c1","rev":4,"modifiedMs":1763636399123,"removed":true}`, review.OpDelete,
			review.Review{ID: "cinescore:c1", Provider: "cinescore", ExternalID: "c1", Version: 4,
				SourceUpdatedAt: modified, IngestedAt: ingested.UTC()}, ""},
		{"delete ignores bad content", cs(func(m map[string]any) { m["removed"] = true; m["stars"] = 99; m["lang"] = "!!" }), review.OpDelete,
			review.Review{ID: "cinescore:cs-000042", Provider: "cinescore", ExternalID: "cs-000042", MovieID: "tt0068646",
				Version: 2, SourceUpdatedAt: modified, IngestedAt: ingested.UTC()}, ""},
		{"removed false is an upsert", cs(func(m map[string]any) { m["removed"] = false }), review.OpUpsert, full, ""},
		{"upsert without film", cs(func(m map[string]any) { delete(m, "film") }), "", review.Review{}, provider.ReasonInvalidField},
		{"bad imdb id", cs(func(m map[string]any) { m["film"] = map[string]any{"imdb": "tt12"} }), "", review.Review{}, provider.ReasonInvalidField},
		{"bad imdb id on delete", cs(func(m map[string]any) { m["removed"] = true; m["film"] = map[string]any{"imdb": "nm0000001"} }), "", review.Review{}, provider.ReasonInvalidField},
		{"missing id", cs(func(m map[string]any) { delete(m, "critiqueId") }), "", review.Review{}, provider.ReasonInvalidField},
		{"blank id", cs(func(m map[string]any) { m["critiqueId"] = "  " }), "", review.Review{}, provider.ReasonInvalidField},
		{"id with control character", cs(func(m map[string]any) { m["critiqueId"] = "a\x00b" }), "", review.Review{}, provider.ReasonInvalidField},
		{"id too long", cs(func(m map[string]any) { m["critiqueId"] = strings.Repeat("x", 257) }), "", review.Review{}, provider.ReasonFieldTooLong},
		{"rev zero", cs(func(m map[string]any) { m["rev"] = 0 }), "", review.Review{}, provider.ReasonInvalidField},
		{"rev fractional", cs(func(m map[string]any) { m["rev"] = 2.5 }), "", review.Review{}, provider.ReasonInvalidField},
		{"rev as string", cs(func(m map[string]any) { m["rev"] = "2" }), "", review.Review{}, provider.ReasonInvalidField},
		{"missing modifiedMs", cs(func(m map[string]any) { delete(m, "modifiedMs") }), "", review.Review{}, provider.ReasonInvalidField},
		{"negative modifiedMs", cs(func(m map[string]any) { m["modifiedMs"] = -5 }), "", review.Review{}, provider.ReasonInvalidField},
		{"modifiedMs in seconds is 1970", cs(func(m map[string]any) { m["modifiedMs"] = 1763636399 }), review.OpUpsert,
			with(func(r *review.Review) { r.SourceUpdatedAt = time.UnixMilli(1763636399).UTC() }), ""},
		{"modifiedMs past year 9999", cs(func(m map[string]any) { m["modifiedMs"] = int64(253402300800000) }), "", review.Review{}, provider.ReasonInvalidField},
		{"modifiedMs as RFC 3339", cs(func(m map[string]any) { m["modifiedMs"] = "2026-11-20T10:00:00Z" }), "", review.Review{}, provider.ReasonInvalidField},
		{"body at the limit", cs(func(m map[string]any) { m["text"] = strings.Repeat("a", provider.MaxBodyChars) }), review.OpUpsert,
			with(func(r *review.Review) { r.Body = strings.Repeat("a", provider.MaxBodyChars) }), ""},
		{"huge body", cs(func(m map[string]any) { m["text"] = strings.Repeat("a", provider.MaxBodyChars+1) }), "", review.Review{}, provider.ReasonFieldTooLong},
		{"unicode and control characters", cs(func(m map[string]any) {
			m["text"] = "Ça\u0007 marche 🎬\t日本語"
			m["headline"] = "\u0085Bravo"
			m["critic"] = map[string]any{"name": "Zoë"}
		}), review.OpUpsert, with(func(r *review.Review) { r.Body = "Ça marche 🎬\t日本語"; r.Title = "Bravo"; r.Author = "Zoë" }), ""},
		{"no critic", cs(func(m map[string]any) { delete(m, "critic") }), review.OpUpsert, with(func(r *review.Review) { r.Author = "" }), ""},
		{"bad language", cs(func(m map[string]any) { m["lang"] = "english!" }), "", review.Review{}, provider.ReasonInvalidField},
		{"relative permalink", cs(func(m map[string]any) { m["permalink"] = "/critiques/1" }), "", review.Review{}, provider.ReasonInvalidField},
		{"javascript permalink", cs(func(m map[string]any) { m["permalink"] = "javascript:alert(1)" }), "", review.Review{}, provider.ReasonInvalidField},
		{"unknown fields are ignored", cs(func(m map[string]any) { m["extra"] = map[string]any{"x": 1} }), review.OpUpsert, full, ""},
		{"not JSON", `{"critiqueId":`, "", review.Review{}, provider.ReasonNotJSON},
		{"array", `[` + cs(nil) + `]`, "", review.Review{}, provider.ReasonUnknownShape},
		{"null", `null`, "", review.Review{}, provider.ReasonUnknownShape},
		{"generic event", `{"type":"review.upserted","data":{"review_id":"r1","version":1,"updated_at":"2026-11-20T10:00:00Z","movie":{"imdb_id":"tt0111161"}}}`,
			"", review.Review{}, provider.ReasonInvalidField},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := provider.Cinescore{}.Normalize([]byte(tc.payload), ingested)
			checkNormalize(t, ev, err, tc.op, tc.want, tc.reason)
		})
	}
}

func checkNormalize(t *testing.T, ev review.Event, err error, op review.Op, want review.Review, reason provider.Reason) {
	t.Helper()
	if reason != "" {
		if err == nil {
			t.Fatalf("no error, want %s; got %+v", reason, ev)
		}
		if _, ok := err.(*provider.Error); !ok {
			t.Fatalf("error %v is %T, want *provider.Error", err, err)
		}
		if got := provider.ReasonOf(err); got != reason {
			t.Fatalf("reason %s (%v), want %s", got, err, reason)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if ev.Op != op {
		t.Errorf("op %s, want %s", ev.Op, op)
	}
	gotJSON, _ := json.Marshal(ev.Review)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("review\n got  %s\n want %s", gotJSON, wantJSON)
	}
	if _, err := ev.Marshal(); err != nil {
		t.Errorf("normalized event does not marshal: %v", err)
	}
}

func TestCinescoreSplit(t *testing.T) {
	one := cs(nil)
	two := cs(func(m map[string]any) { m["critiqueId"] = "cs-2"; m["removed"] = true })
	many := make([]string, provider.MaxEventsPerDelivery+1)
	for i := range many {
		many[i] = one
	}
	tests := []struct {
		name   string
		body   string
		ids    []string
		reason provider.Reason
	}{
		{"one", `{"deliveryId":"d1","sentMs":1,"notifications":[` + one + `]}`, []string{"cs-000042"}, ""},
		{"two with a delete, spaced", " \n{\"notifications\": [ " + one + " ,\n " + two + " ]}\n", []string{"cs-000042", "cs-2"}, ""},
		{"at the limit", `{"notifications":[` + strings.Join(many[:provider.MaxEventsPerDelivery], ",") + `]}`, nil, ""},
		{"over the limit", `{"notifications":[` + strings.Join(many, ",") + `]}`, nil, provider.ReasonTooManyEvents},
		{"empty", `{"notifications":[]}`, nil, provider.ReasonUnknownShape},
		{"bare notification", one, nil, provider.ReasonUnknownShape},
		{"notifications not an array", `{"notifications":{}}`, nil, provider.ReasonUnknownShape},
		{"array body", `[` + one + `]`, nil, provider.ReasonUnknownShape},
		{"null body", `null`, nil, provider.ReasonUnknownShape},
		{"empty body", ``, nil, provider.ReasonNotJSON},
		{"not JSON", `{"notifications":[`, nil, provider.ReasonNotJSON},
		{"one bad notification fails the delivery", `{"notifications":[` + one + `,` + cs(func(m map[string]any) { m["rev"] = 0 }) + `]}`, nil, provider.ReasonInvalidField},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			changes, err := provider.Cinescore{}.Split([]byte(tc.body))
			checkSplit(t, provider.Cinescore{}, changes, err, tc.ids, tc.reason)
		})
	}
	t.Run("payload bytes untouched", func(t *testing.T) {
		changes, err := provider.Cinescore{}.Split([]byte(`{"notifications":[ ` + one + ` , ` + two + ` ]}`))
		if err != nil {
			t.Fatal(err)
		}
		if string(changes[0].Payload) != one || string(changes[1].Payload) != two {
			t.Errorf("payloads changed:\n%s\n%s", changes[0].Payload, changes[1].Payload)
		}
	})
}

func checkSplit(t *testing.T, a provider.Adapter, changes []provider.RawEvent, err error, ids []string, reason provider.Reason) {
	t.Helper()
	if reason != "" {
		if err == nil {
			t.Fatalf("no error, want %s", reason)
		}
		if _, ok := err.(*provider.Error); !ok {
			t.Fatalf("error %v is %T, want *provider.Error", err, err)
		}
		if got := provider.ReasonOf(err); got != reason {
			t.Fatalf("reason %s (%v), want %s", got, err, reason)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if ids != nil {
		if len(changes) != len(ids) {
			t.Fatalf("%d changes, want %d", len(changes), len(ids))
		}
		for i, id := range ids {
			if changes[i].ReviewID != id {
				t.Errorf("change %d: review id %q, want %q", i, changes[i].ReviewID, id)
			}
		}
	}
	for i, c := range changes {
		ev, err := a.Normalize(c.Payload, time.Now())
		if err != nil {
			t.Fatalf("change %d does not normalize: %v", i, err)
		}
		if ev.Review.ID != review.Key(a.Name(), c.ReviewID) {
			t.Errorf("change %d: normalized id %q, split id %q", i, ev.Review.ID, c.ReviewID)
		}
	}
}
