package provider_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// rp builds a reelpulse change from a base edit, with post edits applied.
func rp(event string, edit func(post map[string]any)) string {
	post := map[string]any{
		"uid":       "rp_5f2c9a1b",
		"revision":  4,
		"edited":    "2026-11-20 10:00:00",
		"title_ref": map[string]any{"imdb": "tt0133093", "label": "The Matrix"},
		"byline":    "M. Ortiz",
		"heading":   "Still bends the mind",
		"content":   "Whoa.",
		"score":     "B+",
		"locale":    "pt_BR",
		"link":      "https://reelpulse.example/p/rp_5f2c9a1b",
	}
	if edit != nil {
		edit(post)
	}
	b, err := json.Marshal(map[string]any{"event": event, "post": post})
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestReelpulseNormalize(t *testing.T) {
	ingested := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	edited := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	full := review.Review{
		ID: "reelpulse:rp_5f2c9a1b", Provider: "reelpulse", ExternalID: "rp_5f2c9a1b", MovieID: "tt0133093",
		Author: "M. Ortiz", Rating: intp(75), Title: "Still bends the mind", Body: "Whoa.", Language: "pt-BR",
		URL: "https://reelpulse.example/p/rp_5f2c9a1b", Version: 4, SourceUpdatedAt: edited, IngestedAt: ingested,
	}
	with := func(f func(r *review.Review)) review.Review { r := full; f(&r); return r }
	tomb := review.Review{ID: "reelpulse:rp_5f2c9a1b", Provider: "reelpulse", ExternalID: "rp_5f2c9a1b", MovieID: "tt0133093",
		Version: 4, SourceUpdatedAt: edited, IngestedAt: ingested}
	score := func(s any) func(p map[string]any) { return func(p map[string]any) { p["score"] = s } }
	tests := []struct {
		name    string
		payload string
		op      review.Op
		want    review.Review
		reason  provider.Reason
	}{
		{"edited", rp(provider.ReelpulseEdited, nil), review.OpUpsert, full, ""},
		{"published", rp(provider.ReelpulsePublished, nil), review.OpUpsert, full, ""},
		{"grade A+", rp(provider.ReelpulseEdited, score("A+")), review.OpUpsert, with(func(r *review.Review) { r.Rating = intp(100) }), ""},
		{"grade F", rp(provider.ReelpulseEdited, score("F")), review.OpUpsert, with(func(r *review.Review) { r.Rating = intp(0) }), ""},
		{"grade C lower case", rp(provider.ReelpulseEdited, score(" c ")), review.OpUpsert, with(func(r *review.Review) { r.Rating = intp(42) }), ""},
		{"grade D-", rp(provider.ReelpulseEdited, score("D-")), review.OpUpsert, with(func(r *review.Review) { r.Rating = intp(8) }), ""},
		{"unknown grade E", rp(provider.ReelpulseEdited, score("E")), "", review.Review{}, provider.ReasonInvalidField},
		{"grade A++", rp(provider.ReelpulseEdited, score("A++")), "", review.Review{}, provider.ReasonInvalidField},
		{"percentage", rp(provider.ReelpulseEdited, score("87%")), review.OpUpsert, with(func(r *review.Review) { r.Rating = intp(87) }), ""},
		{"decimal percentage", rp(provider.ReelpulseEdited, score("86.5%")), review.OpUpsert, with(func(r *review.Review) { r.Rating = intp(87) }), ""},
		{"0%", rp(provider.ReelpulseEdited, score("0%")), review.OpUpsert, with(func(r *review.Review) { r.Rating = intp(0) }), ""},
		{"100%", rp(provider.ReelpulseEdited, score("100%")), review.OpUpsert, with(func(r *review.Review) { r.Rating = intp(100) }), ""},
		{"percentage above scale", rp(provider.ReelpulseEdited, score("101%")), "", review.Review{}, provider.ReasonInvalidField},
		{"negative percentage", rp(provider.ReelpulseEdited, score("-1%")), "", review.Review{}, provider.ReasonInvalidField},
		{"NaN percentage", rp(provider.ReelpulseEdited, score("NaN%")), "", review.Review{}, provider.ReasonInvalidField},
		{"bare number", rp(provider.ReelpulseEdited, score("87")), "", review.Review{}, provider.ReasonInvalidField},
		{"score as number", rp(provider.ReelpulseEdited, score(87)), "", review.Review{}, provider.ReasonInvalidField},
		{"no score", rp(provider.ReelpulseEdited, func(p map[string]any) { delete(p, "score") }), review.OpUpsert, with(func(r *review.Review) { r.Rating = nil }), ""},
		{"null score", rp(provider.ReelpulseEdited, score(nil)), review.OpUpsert, with(func(r *review.Review) { r.Rating = nil }), ""},
		{"empty score", rp(provider.ReelpulseEdited, score("")), review.OpUpsert, with(func(r *review.Review) { r.Rating = nil }), ""},
		{"retracted tombstone", `{"event":"post.retracted","post":{"uid":"rp_5f2c9a1b","revision":4,"edited":"2026-11-20 10:00:00","title_ref":{"imdb":"tt0133093"}}}`,
			review.OpDelete, tomb, ""},
		{"retracted without title", `{"event":"post.retracted","post":{"uid":"rp_5f2c9a1b","revision":4,"edited":"2026-11-20 10:00:00"}}`,
			review.OpDelete, with(func(r *review.Review) { *r = tomb; r.MovieID = "" }), ""},
		{"retracted ignores bad content", rp(provider.ReelpulseRetracted, score("Z")), review.OpDelete, tomb, ""},
		{"retracted without uid", `{"event":"post.retracted","post":{"revision":4,"edited":"2026-11-20 10:00:00"}}`, "", review.Review{}, provider.ReasonInvalidField},
		{"unknown event kind", rp("post.deleted", nil), "", review.Review{}, provider.ReasonUnknownShape},
		{"no event kind", `{"post":{"uid":"a","revision":1,"edited":"2026-11-20 10:00:00"}}`, "", review.Review{}, provider.ReasonUnknownShape},
		{"upsert without title", rp(provider.ReelpulseEdited, func(p map[string]any) { delete(p, "title_ref") }), "", review.Review{}, provider.ReasonInvalidField},
		{"bad imdb", rp(provider.ReelpulseEdited, func(p map[string]any) { p["title_ref"] = map[string]any{"imdb": "tt01330930000"} }), "", review.Review{}, provider.ReasonInvalidField},
		{"revision zero", rp(provider.ReelpulseEdited, func(p map[string]any) { p["revision"] = 0 }), "", review.Review{}, provider.ReasonInvalidField},
		{"revision negative", rp(provider.ReelpulseEdited, func(p map[string]any) { p["revision"] = -1 }), "", review.Review{}, provider.ReasonInvalidField},
		{"RFC 3339 time refused", rp(provider.ReelpulseEdited, func(p map[string]any) { p["edited"] = "2026-11-20T10:00:00Z" }), "", review.Review{}, provider.ReasonInvalidField},
		{"epoch time refused", rp(provider.ReelpulseEdited, func(p map[string]any) { p["edited"] = 1763632800 }), "", review.Review{}, provider.ReasonInvalidField},
		{"missing time", rp(provider.ReelpulseEdited, func(p map[string]any) { delete(p, "edited") }), "", review.Review{}, provider.ReasonInvalidField},
		{"February 30th", rp(provider.ReelpulseEdited, func(p map[string]any) { p["edited"] = "2026-02-30 10:00:00" }), "", review.Review{}, provider.ReasonInvalidField},
		{"fractional seconds tolerated", rp(provider.ReelpulseEdited, func(p map[string]any) { p["edited"] = "2026-11-20 10:00:00.250" }), review.OpUpsert,
			with(func(r *review.Review) { r.SourceUpdatedAt = edited.Add(250 * time.Millisecond) }), ""},
		{"leap day", rp(provider.ReelpulseEdited, func(p map[string]any) { p["edited"] = "2028-02-29 23:59:59" }), review.OpUpsert,
			with(func(r *review.Review) { r.SourceUpdatedAt = time.Date(2028, 2, 29, 23, 59, 59, 0, time.UTC) }), ""},
		{"BCP 47 locale", rp(provider.ReelpulseEdited, func(p map[string]any) { p["locale"] = "en-us" }), review.OpUpsert, with(func(r *review.Review) { r.Language = "en-US" }), ""},
		{"bad locale", rp(provider.ReelpulseEdited, func(p map[string]any) { p["locale"] = "xx_YY_ZZ_!!" }), "", review.Review{}, provider.ReasonInvalidField},
		{"huge body", rp(provider.ReelpulseEdited, func(p map[string]any) { p["content"] = strings.Repeat("é", provider.MaxBodyChars/2+1) }), "", review.Review{}, provider.ReasonFieldTooLong},
		{"unicode", rp(provider.ReelpulseEdited, func(p map[string]any) { p["content"] = "Привет\u200b 👍\r\n"; p["byline"] = "\x1bM." }), review.OpUpsert,
			with(func(r *review.Review) { r.Body = "Привет\u200b 👍\n"; r.Author = "M." }), ""},
		{"ftp link", rp(provider.ReelpulseEdited, func(p map[string]any) { p["link"] = "ftp://reelpulse.example/p" }), "", review.Review{}, provider.ReasonInvalidField},
		{"post not an object", `{"event":"post.edited","post":[1]}`, "", review.Review{}, provider.ReasonInvalidField},
		{"not JSON", `{"event":`, "", review.Review{}, provider.ReasonNotJSON},
		{"array", `[` + rp(provider.ReelpulseEdited, nil) + `]`, "", review.Review{}, provider.ReasonUnknownShape},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := provider.Reelpulse{}.Normalize([]byte(tc.payload), ingested)
			checkNormalize(t, ev, err, tc.op, tc.want, tc.reason)
		})
	}
}

func TestReelpulseGradeTable(t *testing.T) {
	want := map[string]int{"F": 0, "D-": 8, "D": 17, "D+": 25, "C-": 33, "C": 42, "C+": 50, "B-": 58, "B": 67, "B+": 75, "A-": 83, "A": 92, "A+": 100}
	if len(provider.ReelpulseGrades) != len(want) {
		t.Fatalf("%d grades, want %d", len(provider.ReelpulseGrades), len(want))
	}
	for g, w := range want {
		got, err := provider.ReelpulseScore(g)
		if err != nil || got != w {
			t.Errorf("%s: %d, %v; want %d", g, got, err, w)
		}
	}
}

func TestReelpulseSplit(t *testing.T) {
	one := rp(provider.ReelpulseEdited, nil)
	two := `{"event":"post.retracted","post":{"uid":"rp_2","revision":9,"edited":"2026-11-20 10:00:00"}}`
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
		{"one", `[` + one + `]`, []string{"rp_5f2c9a1b"}, ""},
		{"two with a tombstone", "\n[ " + one + ",\n" + two + " ]", []string{"rp_5f2c9a1b", "rp_2"}, ""},
		{"at the limit", `[` + strings.Join(many[:provider.MaxEventsPerDelivery], ",") + `]`, nil, ""},
		{"over the limit", `[` + strings.Join(many, ",") + `]`, nil, provider.ReasonTooManyEvents},
		{"empty array", `[]`, nil, provider.ReasonUnknownShape},
		{"bare change", one, nil, provider.ReasonUnknownShape},
		{"wrapped", `{"changes":[` + one + `]}`, nil, provider.ReasonUnknownShape},
		{"array of numbers", `[1,2]`, nil, provider.ReasonUnknownShape},
		{"empty body", `  `, nil, provider.ReasonNotJSON},
		{"not JSON", `[{"event"`, nil, provider.ReasonNotJSON},
		{"one bad change fails the delivery", `[` + one + `,` + rp("post.bogus", nil) + `]`, nil, provider.ReasonUnknownShape},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			changes, err := provider.Reelpulse{}.Split([]byte(tc.body))
			checkSplit(t, provider.Reelpulse{}, changes, err, tc.ids, tc.reason)
		})
	}
	t.Run("payload bytes untouched", func(t *testing.T) {
		changes, err := provider.Reelpulse{}.Split([]byte("[" + one + " , " + two + "]"))
		if err != nil {
			t.Fatal(err)
		}
		if string(changes[0].Payload) != one || string(changes[1].Payload) != two {
			t.Errorf("payloads changed:\n%s\n%s", changes[0].Payload, changes[1].Payload)
		}
	})
}

func TestDefaultRegistersAllProviders(t *testing.T) {
	got := strings.Join(provider.Default().Names(), ",")
	if got != "cinescore,generic,reelpulse" {
		t.Fatalf("Default() names %s", got)
	}
}
