package provider

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/review"
)

var genericIngested = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// data is a valid generic upsert's data; each case edits a copy.
func genericData() map[string]any {
	return map[string]any{
		"review_id":  "r-1",
		"version":    3,
		"updated_at": "2026-11-20T10:00:00Z",
		"movie":      map[string]any{"imdb_id": "tt0111161", "title": "The Shawshank Redemption"},
		"author":     "Ann",
		"title":      "Great",
		"body":       "Loved it",
		"rating":     map[string]any{"value": 4.5, "scale": 5},
		"language":   "en",
		"url":        "https://example.com/r-1",
	}
}

func genericPayload(t *testing.T, typ string, d map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"type": typ, "data": d})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func genericWith(edit func(d map[string]any)) map[string]any {
	d := genericData()
	edit(d)
	return d
}

func genericInt(n int) *int { return &n }

func TestGenericNormalize(t *testing.T) {
	cases := []struct {
		name string
		typ  string
		data map[string]any
		raw  string // used instead of typ/data when set
		// reason is the permanent error's Reason; "" when the event must
		// normalize, then check looks at the event.
		reason Reason
		check  func(t *testing.T, ev review.Event)
	}{
		{name: "full upsert", typ: GenericUpserted, data: genericData(), check: func(t *testing.T, ev review.Event) {
			want := review.Review{ID: "generic:r-1", Provider: "generic", ExternalID: "r-1", MovieID: "tt0111161",
				Author: "Ann", Rating: genericInt(90), Title: "Great", Body: "Loved it", Language: "en", URL: "https://example.com/r-1",
				Version: 3, SourceUpdatedAt: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), IngestedAt: genericIngested}
			if ev.Op != review.OpUpsert || !sameGenericReview(ev.Review, want) {
				t.Fatalf("got %+v\nwant %+v", ev.Review, want)
			}
		}},

		// Ratings.
		{name: "no rating", typ: GenericUpserted, data: genericWith(func(d map[string]any) { delete(d, "rating") }),
			check: wantGenericRating(nil)},
		{name: "rating null", typ: GenericUpserted, data: genericWith(func(d map[string]any) { d["rating"] = nil }),
			check: wantGenericRating(nil)},
		{name: "rating above the scale is clamped to 100", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["rating"] = map[string]any{"value": 11, "scale": 10} }), check: wantGenericRating(genericInt(100))},
		{name: "negative rating is clamped to 0", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["rating"] = map[string]any{"value": -1, "scale": 10} }), check: wantGenericRating(genericInt(0))},
		{name: "rating rounds half away from zero", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["rating"] = map[string]any{"value": 7.25, "scale": 10} }), check: wantGenericRating(genericInt(73))},
		{name: "rating on a 100 scale", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["rating"] = map[string]any{"value": 0, "scale": 100} }), check: wantGenericRating(genericInt(0))},
		{name: "rating without a scale", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["rating"] = map[string]any{"value": 4} }), reason: ReasonInvalidField},
		{name: "rating with a negative scale", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["rating"] = map[string]any{"value": 4, "scale": -5} }), reason: ReasonInvalidField},
		{name: "rating as a string", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["rating"] = map[string]any{"value": "4", "scale": 5} }), reason: ReasonUnknownShape},

		// Dates.
		{name: "date with an offset becomes UTC", typ: GenericUpserted,
			data:  genericWith(func(d map[string]any) { d["updated_at"] = "2026-11-20T10:00:00+05:30" }),
			check: wantGenericUpdated(time.Date(2026, 11, 20, 4, 30, 0, 0, time.UTC))},
		{name: "date with nanoseconds keeps them", typ: GenericUpserted,
			data:  genericWith(func(d map[string]any) { d["updated_at"] = "2026-11-20T10:00:00.123456789Z" }),
			check: wantGenericUpdated(time.Date(2026, 11, 20, 10, 0, 0, 123456789, time.UTC))},
		{name: "date with -00:00", typ: GenericUpserted,
			data:  genericWith(func(d map[string]any) { d["updated_at"] = "2026-11-20T10:00:00-00:00" }),
			check: wantGenericUpdated(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC))},
		{name: "date without a zone", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["updated_at"] = "2026-11-20T10:00:00" }), reason: ReasonInvalidField},
		{name: "date with a space for T", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["updated_at"] = "2026-11-20 10:00:00Z" }), reason: ReasonInvalidField},
		{name: "date only", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["updated_at"] = "2026-11-20" }), reason: ReasonInvalidField},
		{name: "February 30th", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["updated_at"] = "2026-02-30T00:00:00Z" }), reason: ReasonInvalidField},
		{name: "leap second", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["updated_at"] = "2026-12-31T23:59:60Z" }), reason: ReasonInvalidField},
		{name: "Unix seconds", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["updated_at"] = 1763632800 }), reason: ReasonUnknownShape},
		{name: "date missing", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { delete(d, "updated_at") }), reason: ReasonInvalidField},

		// Body and text.
		{name: "body of exactly 100 KB", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["body"] = strings.Repeat("a", MaxBodyChars) }),
			check: func(t *testing.T, ev review.Event) {
				if len(ev.Review.Body) != MaxBodyChars {
					t.Fatalf("body of %d bytes", len(ev.Review.Body))
				}
			}},
		{name: "body over 100 KB", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["body"] = strings.Repeat("a", MaxBodyChars+1) }), reason: ReasonFieldTooLong},
		{name: "huge body of 1 MB", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["body"] = strings.Repeat("é", 512*1024) }), reason: ReasonFieldTooLong},
		{name: "Unicode kept as written", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) {
				d["author"], d["title"], d["body"] = "Zoë Ŝ", "Amélie 🎬", "日本語のレビュー\n\tעברית 👍🏽 e\u0301"
			}),
			check: func(t *testing.T, ev review.Event) {
				if ev.Review.Author != "Zoë Ŝ" || ev.Review.Title != "Amélie 🎬" || ev.Review.Body != "日本語のレビュー\n\tעברית 👍🏽 e\u0301" {
					t.Fatalf("text changed: %q %q %q", ev.Review.Author, ev.Review.Title, ev.Review.Body)
				}
			}},
		{name: "control characters removed, newline and tab kept", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) {
				d["title"], d["body"] = "A\u0000B\u0007C\u001b[31m", "line1\r\nline2\tx\u007f\u0085y"
			}),
			check: func(t *testing.T, ev review.Event) {
				if ev.Review.Title != "ABC[31m" || ev.Review.Body != "line1\nline2\txy" {
					t.Fatalf("title %q, body %q", ev.Review.Title, ev.Review.Body)
				}
			}},
		// Not UTF-8 is not JSON text (RFC 8259): refused, so the dead
		// letter keeps the bytes, rather than stored with U+FFFD.
		{name: "invalid UTF-8 in the payload", raw: "{\"type\":\"review.upserted\",\"data\":{\"review_id\":\"r-1\",\"version\":1," +
			"\"updated_at\":\"2026-11-20T10:00:00Z\",\"movie\":{\"imdb_id\":\"tt0111161\"},\"body\":\"a\xffb\"}}",
			reason: ReasonNotJSON},
		{name: "a Latin-1 body", raw: "{\"type\":\"review.upserted\",\"data\":{\"review_id\":\"r-1\",\"version\":1," +
			"\"updated_at\":\"2026-11-20T10:00:00Z\",\"movie\":{\"imdb_id\":\"tt0111161\"},\"author\":\"Jos\xe9\"}}",
			reason: ReasonNotJSON},

		// Movie ids.
		{name: "imdb id with 10 digits", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["movie"] = map[string]any{"imdb_id": "tt1234567890"} }),
			check: func(t *testing.T, ev review.Event) {
				if ev.Review.MovieID != "tt1234567890" {
					t.Fatal(ev.Review.MovieID)
				}
			}},
		{name: "imdb id too short", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["movie"] = map[string]any{"imdb_id": "tt123456"} }), reason: ReasonInvalidField},
		{name: "imdb id too long", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["movie"] = map[string]any{"imdb_id": "tt12345678901"} }), reason: ReasonInvalidField},
		{name: "imdb id upper case", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["movie"] = map[string]any{"imdb_id": "TT0111161"} }), reason: ReasonInvalidField},
		{name: "imdb name id", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["movie"] = map[string]any{"imdb_id": "nm0000001"} }), reason: ReasonInvalidField},
		{name: "imdb id with a trailing newline", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["movie"] = map[string]any{"imdb_id": "tt0111161\n"} }), reason: ReasonInvalidField},
		{name: "imdb id empty", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { d["movie"] = map[string]any{"imdb_id": ""} }), reason: ReasonInvalidField},
		{name: "upsert without movie", typ: GenericUpserted,
			data: genericWith(func(d map[string]any) { delete(d, "movie") }), reason: ReasonInvalidField},

		// Deletes.
		{name: "delete without movie", typ: GenericDeleted,
			data: map[string]any{"review_id": "r-1", "version": 4, "updated_at": "2026-11-21T00:00:00Z"},
			check: func(t *testing.T, ev review.Event) {
				r := ev.Review
				if ev.Op != review.OpDelete || r.ID != "generic:r-1" || r.MovieID != "" || r.Version != 4 || r.Rating != nil ||
					!r.SourceUpdatedAt.Equal(time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)) {
					t.Fatalf("delete %+v", ev)
				}
			}},
		{name: "delete with movie names it", typ: GenericDeleted, data: genericData(),
			check: func(t *testing.T, ev review.Event) {
				if ev.Op != review.OpDelete || ev.Review.MovieID != "tt0111161" || ev.Review.Body != "" || ev.Review.Rating != nil {
					t.Fatalf("delete %+v: only identity, version and movie travel", ev)
				}
			}},
		{name: "delete with a malformed movie id keeps the delete", typ: GenericDeleted,
			data: genericWith(func(d map[string]any) { d["movie"] = map[string]any{"imdb_id": "nm0000001"} }),
			check: func(t *testing.T, ev review.Event) {
				if ev.Op != review.OpDelete || ev.Review.MovieID != "" || ev.Review.Version != 3 {
					t.Fatalf("delete %+v: want the delete without the malformed movie", ev)
				}
			}},
		{name: "delete without version", typ: GenericDeleted,
			data: map[string]any{"review_id": "r-1", "updated_at": "2026-11-21T00:00:00Z"}, reason: ReasonInvalidField},

		// Identity and version.
		{name: "review id missing", typ: GenericUpserted, data: genericWith(func(d map[string]any) { delete(d, "review_id") }), reason: ReasonInvalidField},
		{name: "review id blank", typ: GenericUpserted, data: genericWith(func(d map[string]any) { d["review_id"] = "  " }), reason: ReasonInvalidField},
		{name: "version 0", typ: GenericUpserted, data: genericWith(func(d map[string]any) { d["version"] = 0 }), reason: ReasonInvalidField},
		{name: "negative version", typ: GenericUpserted, data: genericWith(func(d map[string]any) { d["version"] = -3 }), reason: ReasonInvalidField},
		{name: "fractional version", typ: GenericUpserted, data: genericWith(func(d map[string]any) { d["version"] = 1.5 }), reason: ReasonUnknownShape},
		{name: "version as a string", typ: GenericUpserted, data: genericWith(func(d map[string]any) { d["version"] = "3" }), reason: ReasonUnknownShape},
		{name: "largest version", typ: GenericUpserted, data: genericWith(func(d map[string]any) { d["version"] = int64(math.MaxInt64) }),
			check: func(t *testing.T, ev review.Event) {
				if ev.Review.Version != math.MaxInt64 {
					t.Fatal(ev.Review.Version)
				}
			}},

		// Language and URL.
		{name: "language canonicalized", typ: GenericUpserted, data: genericWith(func(d map[string]any) { d["language"] = "zh-hant-tw" }),
			check: func(t *testing.T, ev review.Event) {
				if ev.Review.Language != "zh-Hant-TW" {
					t.Fatal(ev.Review.Language)
				}
			}},
		{name: "language not BCP 47", typ: GenericUpserted, data: genericWith(func(d map[string]any) { d["language"] = "english" }), reason: ReasonInvalidField},
		{name: "javascript URL", typ: GenericUpserted, data: genericWith(func(d map[string]any) { d["url"] = "javascript:alert(1)" }), reason: ReasonInvalidField},
		{name: "relative URL", typ: GenericUpserted, data: genericWith(func(d map[string]any) { d["url"] = "/reviews/1" }), reason: ReasonInvalidField},

		// Shapes.
		{name: "unknown type", typ: "review.liked", data: genericData(), reason: ReasonUnknownShape},
		{name: "not JSON", raw: `{"type":`, reason: ReasonNotJSON},
		{name: "an array", raw: `[]`, reason: ReasonUnknownShape},
		{name: "unknown fields are ignored", raw: `{"type":"review.deleted","extra":1,"data":{"review_id":"r-1","version":2,"updated_at":"2026-11-20T10:00:00Z","flags":["x"]}}`,
			check: func(t *testing.T, ev review.Event) {
				if ev.Op != review.OpDelete {
					t.Fatal(ev.Op)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := []byte(c.raw)
			if c.raw == "" {
				in = genericPayload(t, c.typ, c.data)
			}
			ev, err := Generic{}.Normalize(in, genericIngested)
			if c.reason != "" {
				if err == nil {
					t.Fatalf("normalized to %+v, want a %s error", ev, c.reason)
				}
				if got := ReasonOf(err); got != c.reason {
					t.Fatalf("error %q has reason %q, want %q", err, got, c.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			c.check(t, ev)
			// The receiver accepts what the processor accepts: Split
			// agrees with Normalize.
			if changes, err := (Generic{}).Split(in); err != nil || len(changes) != 1 || changes[0].ReviewID != ev.Review.ExternalID {
				t.Fatalf("Split disagrees: %v, %v", changes, err)
			}
		})
	}
}

func wantGenericRating(want *int) func(t *testing.T, ev review.Event) {
	return func(t *testing.T, ev review.Event) {
		t.Helper()
		got := ev.Review.Rating
		if (got == nil) != (want == nil) || (got != nil && *got != *want) {
			t.Fatalf("rating %v, want %v", genericDeref(got), genericDeref(want))
		}
	}
}

func wantGenericUpdated(want time.Time) func(t *testing.T, ev review.Event) {
	return func(t *testing.T, ev review.Event) {
		t.Helper()
		got := ev.Review.SourceUpdatedAt
		if !got.Equal(want) || got.Location() != time.UTC {
			t.Fatalf("source_updated_at %v, want %v in UTC", got, want)
		}
	}
}

func genericDeref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func sameGenericReview(a, b review.Review) bool {
	ra, rb := a.Rating, b.Rating
	a.Rating, b.Rating = nil, nil
	return a == b && (ra == nil) == (rb == nil) && (ra == nil || *ra == *rb)
}

// Two receipts of one change normalize alike, except for when they were
// ingested: their content hashes agree.
func TestGenericNormalizeIsDeterministic(t *testing.T) {
	in := genericPayload(t, GenericUpserted, genericData())
	a, err := Generic{}.Normalize(in, genericIngested)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generic{}.Normalize(in, genericIngested.Add(time.Hour))
	if review.ContentHash(a.Op, a.Review) != review.ContentHash(b.Op, b.Review) {
		t.Fatal("content hash depends on the ingestion time")
	}
}
