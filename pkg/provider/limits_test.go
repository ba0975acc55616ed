package provider_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

func fill(n int, unit string, bytes bool) string {
	if bytes {
		return strings.Repeat(unit, n/len(unit)) + strings.Repeat("a", n%len(unit))
	}
	return strings.Repeat(unit, n)
}

func url(n int) string {
	p := "https://example.com/"
	return p + strings.Repeat("a", n-len(p))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func genericEvent(edit func(d map[string]any)) []byte {
	d := map[string]any{"review_id": "r-1", "version": 1, "updated_at": "2026-11-20T10:00:00Z",
		"movie": map[string]any{"imdb_id": "tt0111161", "title": "M"}, "author": "A", "title": "T", "body": "B"}
	edit(d)
	return mustJSON(map[string]any{"type": "review.upserted", "data": d})
}

func cinescoreNote(edit func(m map[string]any)) []byte {
	m := map[string]any{"critiqueId": "cs-1", "rev": 1, "modifiedMs": 1763636399123,
		"film": map[string]any{"imdb": "tt0068646", "name": "F"}, "critic": map[string]any{"name": "A"}, "headline": "H", "text": "T"}
	edit(m)
	return mustJSON(m)
}

func reelpulseChange(edit func(p map[string]any)) []byte {
	p := map[string]any{"uid": "rp_1", "revision": 1, "edited": "2026-11-20 10:00:00",
		"title_ref": map[string]any{"imdb": "tt0133093", "label": "L"}, "byline": "B", "heading": "H", "content": "C"}
	edit(p)
	return mustJSON(map[string]any{"event": provider.ReelpulseEdited, "post": p})
}

// TestFieldLimitsAtTheEdge: for every provider and every limited field,
// the largest legal value normalizes (and stays whole), one unit past it is
// refused with field_too_long, and its delivery still splits, so the other
// events of the delivery go on. Multi-byte characters count one character.
func TestFieldLimitsAtTheEdge(t *testing.T) {
	setters := map[string]map[string]func(string) []byte{
		"generic": {
			"review_id": func(v string) []byte { return genericEvent(func(d map[string]any) { d["review_id"] = v }) },
			"author":    func(v string) []byte { return genericEvent(func(d map[string]any) { d["author"] = v }) },
			"title":     func(v string) []byte { return genericEvent(func(d map[string]any) { d["title"] = v }) },
			"movie title": func(v string) []byte {
				return genericEvent(func(d map[string]any) { d["movie"].(map[string]any)["title"] = v })
			},
			"url":  func(v string) []byte { return genericEvent(func(d map[string]any) { d["url"] = v }) },
			"body": func(v string) []byte { return genericEvent(func(d map[string]any) { d["body"] = v }) },
		},
		"cinescore": {
			"review_id": func(v string) []byte { return cinescoreNote(func(m map[string]any) { m["critiqueId"] = v }) },
			"author": func(v string) []byte {
				return cinescoreNote(func(m map[string]any) { m["critic"] = map[string]any{"name": v} })
			},
			"title": func(v string) []byte { return cinescoreNote(func(m map[string]any) { m["headline"] = v }) },
			"movie title": func(v string) []byte {
				return cinescoreNote(func(m map[string]any) { m["film"].(map[string]any)["name"] = v })
			},
			"url":  func(v string) []byte { return cinescoreNote(func(m map[string]any) { m["permalink"] = v }) },
			"body": func(v string) []byte { return cinescoreNote(func(m map[string]any) { m["text"] = v }) },
		},
		"reelpulse": {
			"review_id": func(v string) []byte { return reelpulseChange(func(p map[string]any) { p["uid"] = v }) },
			"author":    func(v string) []byte { return reelpulseChange(func(p map[string]any) { p["byline"] = v }) },
			"title":     func(v string) []byte { return reelpulseChange(func(p map[string]any) { p["heading"] = v }) },
			"movie title": func(v string) []byte {
				return reelpulseChange(func(p map[string]any) { p["title_ref"].(map[string]any)["label"] = v })
			},
			"url":  func(v string) []byte { return reelpulseChange(func(p map[string]any) { p["link"] = v }) },
			"body": func(v string) []byte { return reelpulseChange(func(p map[string]any) { p["content"] = v }) },
		},
	}
	for _, name := range provider.Default().Names() {
		if setters[name] == nil {
			t.Errorf("registered provider %q has no field setters here: its limits are untested", name)
		}
	}
	limits := []struct {
		field string
		max   int
		bytes bool
		unit  string
	}{
		{"review_id", review.MaxExternalIDBytes, true, "é"},
		{"author", review.MaxAuthorChars, false, "🎬"},
		{"title", review.MaxTitleChars, false, "é"},
		{"movie title", review.MaxMovieTitleChars, false, "日"},
		{"url", review.MaxURLBytes, true, "a"},
		{"body", review.MaxBodyBytes, true, "é"},
	}
	reg := provider.Default()
	for name, fields := range setters {
		adapter, _ := reg.Get(name)
		for _, l := range limits {
			value := func(n int) string {
				if l.field == "url" {
					return url(n)
				}
				return fill(n, l.unit, l.bytes)
			}
			t.Run(fmt.Sprintf("%s/%s", name, l.field), func(t *testing.T) {
				edge := fields[l.field](value(l.max))
				if _, err := adapter.Normalize(edge, time.Now()); err != nil {
					t.Fatalf("at the limit of %d: %v", l.max, err)
				}
				past := fields[l.field](value(l.max + 1))
				ev, err := adapter.Normalize(past, time.Now())
				if provider.ReasonOf(err) != provider.ReasonFieldTooLong {
					t.Fatalf("one past the limit of %d: %v, want field_too_long", l.max, err)
				}
				if ev.Review.ExternalID == "" {
					t.Fatalf("the refused event lost its review id")
				}
				// Split lets it through beside a legal neighbour.
				var body []byte
				switch name {
				case "generic":
					body = []byte(`{"events":[` + string(edge) + `,` + string(past) + `]}`)
				case "cinescore":
					body = []byte(`{"notifications":[` + string(edge) + `,` + string(past) + `]}`)
				case "reelpulse":
					body = []byte(`[` + string(edge) + `,` + string(past) + `]`)
				}
				changes, err := adapter.Split(body)
				if err != nil || len(changes) != 2 || changes[1].ReviewID != ev.Review.ExternalID {
					t.Fatalf("split: %d changes, %v", len(changes), err)
				}
			})
		}
	}
}

// TestValidateRefusesWhatTheStoreCannotHold: the model's one check, as the
// sink, redrive and analytics call it.
func TestValidateRefusesWhatTheStoreCannotHold(t *testing.T) {
	ok := review.Event{Op: review.OpUpsert, Review: review.Review{ID: "generic:r", Provider: "generic", ExternalID: "r",
		MovieID: "tt0111161", Version: 1, SourceUpdatedAt: time.Now()}}
	if err := review.Validate(ok); err != nil {
		t.Fatal(err)
	}
	bad := map[string]struct {
		edit   func(e *review.Event)
		reason review.Reason
	}{
		"op":         {func(e *review.Event) { e.Op = "patch" }, review.ReasonInvalidField},
		"id":         {func(e *review.Event) { e.Review.ID = "generic:x" }, review.ReasonInvalidField},
		"version":    {func(e *review.Event) { e.Review.Version = 0 }, review.ReasonInvalidField},
		"movie":      {func(e *review.Event) { e.Review.MovieID = "" }, review.ReasonInvalidField},
		"NUL":        {func(e *review.Event) { e.Review.Body = "a\x00" }, review.ReasonInvalidField},
		"utf-8":      {func(e *review.Event) { e.Review.Title = "\xff" }, review.ReasonInvalidField},
		"language":   {func(e *review.Event) { e.Review.Language = "not a tag!" }, review.ReasonInvalidField},
		"long title": {func(e *review.Event) { e.Review.Title = strings.Repeat("é", review.MaxTitleChars+1) }, review.ReasonFieldTooLong},
		"long body":  {func(e *review.Event) { e.Review.Body = strings.Repeat("a", review.MaxBodyBytes+1) }, review.ReasonFieldTooLong},
		"long id": {func(e *review.Event) {
			e.Review.ExternalID = strings.Repeat("a", review.MaxExternalIDBytes+1)
			e.Review.ID = "generic:" + e.Review.ExternalID
		}, review.ReasonFieldTooLong},
	}
	for name, c := range bad {
		e := ok
		c.edit(&e)
		if got := review.ReasonOf(review.Validate(e)); got != c.reason {
			t.Errorf("%s: reason %q, want %q", name, got, c.reason)
		}
	}
}
