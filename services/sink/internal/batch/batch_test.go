package batch

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func rv(ext string, version int64, title string) review.Review {
	rating := 80
	return review.Review{ID: review.Key("generic", ext), Provider: "generic", ExternalID: ext, MovieID: "tt0111161",
		Author: "Ann", Rating: &rating, Title: title, Body: "body", Language: "en", Version: version,
		SourceUpdatedAt: t0.Add(time.Duration(version) * time.Minute), IngestedAt: t0}
}

func msg(t *testing.T, offset int64, op review.Op, r review.Review, headers ...kafka.Header) kafka.Message {
	t.Helper()
	b, err := review.Event{Op: op, Review: r}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Offset: offset, Key: []byte(r.ID), Value: b, Headers: headers}
}

func TestDecode(t *testing.T) {
	good := rv("a", 2, "t")
	accepted := t0.Add(3 * time.Second)
	m := msg(t, 7, review.OpUpsert, good, kafka.Header{Key: kafkax.HeaderAccepted, Value: []byte(accepted.Format(time.RFC3339Nano))},
		kafka.Header{Key: kafkax.HeaderEventID, Value: []byte("evt_1")})
	c, err := Decode(m, t0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Offset != 7 || c.Deleted || c.Review.Title != "t" || !c.AcceptedAt.Equal(accepted) || c.EventID != "evt_1" ||
		c.Hash != review.ContentHash(review.OpUpsert, good) {
		t.Fatalf("decoded %+v", c)
	}

	del := review.Review{ID: "generic:a", Provider: "generic", ExternalID: "a", Version: 3, Title: "ignored"}
	c, err = Decode(msg(t, 8, review.OpDelete, del), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Deleted || c.Review.Title != "" || c.Review.MovieID != "" || c.AcceptedAt != (time.Time{}) ||
		!c.Review.IngestedAt.Equal(t0) || !c.Review.SourceUpdatedAt.Equal(t0) {
		t.Fatalf("decoded delete %+v: want a tombstone without content, times filled", c)
	}

	bad := func(mut func(*review.Review)) review.Review { r := rv("b", 1, "x"); mut(&r); return r }
	hundredOne := 101
	for name, tc := range map[string]struct {
		m      kafka.Message
		reason string
	}{
		"not json":        {kafka.Message{Key: []byte("generic:b"), Value: []byte("{")}, ReasonNotJSON},
		"unknown op":      {msg(t, 1, "patch", rv("b", 1, "x")), ReasonInvalidEvent},
		"version 0":       {msg(t, 1, review.OpUpsert, bad(func(r *review.Review) { r.Version = 0 })), ReasonInvalidEvent},
		"rating 101":      {msg(t, 1, review.OpUpsert, bad(func(r *review.Review) { r.Rating = &hundredOne })), ReasonInvalidEvent},
		"no movie":        {msg(t, 1, review.OpUpsert, bad(func(r *review.Review) { r.MovieID = "" })), ReasonInvalidEvent},
		"bad movie":       {msg(t, 1, review.OpUpsert, bad(func(r *review.Review) { r.MovieID = "nm123" })), ReasonInvalidEvent},
		"no updated_at":   {msg(t, 1, review.OpUpsert, bad(func(r *review.Review) { r.SourceUpdatedAt = time.Time{} })), ReasonInvalidEvent},
		"NUL in body":     {msg(t, 1, review.OpUpsert, bad(func(r *review.Review) { r.Body = "a\x00b" })), ReasonInvalidEvent},
		"title too long":  {msg(t, 1, review.OpUpsert, bad(func(r *review.Review) { r.Title = strings.Repeat("é", review.MaxTitleChars+1) })), ReasonFieldTooLong},
		"id not composed": {msg(t, 1, review.OpUpsert, bad(func(r *review.Review) { r.ID = "generic:zzz" })), ReasonInvalidEvent},
		"key mismatch": {func() kafka.Message {
			m := msg(t, 1, review.OpUpsert, rv("b", 1, "x"))
			m.Key = []byte("generic:c")
			return m
		}(), ReasonKeyMismatch},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(tc.m, t0)
			if got := ReasonOf(err); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
		})
	}
}

func change(offset int64, op review.Op, r review.Review) Write {
	return Write{Offset: offset, Review: r, Deleted: op == review.OpDelete, Hash: review.ContentHash(op, r)}
}

func TestCollapseKeepsTheGreatestChange(t *testing.T) {
	a1, a2, a3 := rv("a", 1, "one"), rv("a", 2, "two"), rv("a", 3, "three")
	x, y := rv("b", 5, "x"), rv("b", 5, "y")
	hi, lo := x, y
	if review.ContentHash(review.OpUpsert, y) > review.ContentHash(review.OpUpsert, x) {
		hi, lo = y, x
	}
	for name, tc := range map[string]struct {
		in         []Write
		want       map[string]string // id -> title ("" for a delete) of the winner
		superseded int
	}{
		"in order":               {[]Write{change(1, "upsert", a1), change(2, "upsert", a2), change(3, "upsert", a3)}, map[string]string{"generic:a": "three"}, 2},
		"reordered":              {[]Write{change(1, "upsert", a3), change(2, "upsert", a1), change(3, "upsert", a2)}, map[string]string{"generic:a": "three"}, 2},
		"duplicates":             {[]Write{change(1, "upsert", a2), change(2, "upsert", a2)}, map[string]string{"generic:a": "two"}, 1},
		"delete same ver":        {[]Write{change(1, "delete", a2), change(2, "upsert", a2)}, map[string]string{"generic:a": ""}, 1},
		"upsert over old delete": {[]Write{change(1, "delete", a1), change(2, "upsert", a2)}, map[string]string{"generic:a": "two"}, 1},
		"tie: greater hash":      {[]Write{change(1, "upsert", lo), change(2, "upsert", hi)}, map[string]string{"generic:b": hi.Title}, 1},
		"tie, other order":       {[]Write{change(1, "upsert", hi), change(2, "upsert", lo)}, map[string]string{"generic:b": hi.Title}, 1},
		"two ids":                {[]Write{change(1, "upsert", a1), change(2, "upsert", x)}, map[string]string{"generic:a": "one", "generic:b": "x"}, 0},
	} {
		t.Run(name, func(t *testing.T) {
			out, sup := Collapse(tc.in)
			got := map[string]string{}
			for _, c := range out {
				title := c.Review.Title
				if c.Deleted {
					title = ""
				}
				got[c.Review.ID] = title
			}
			if sup != tc.superseded || len(got) != len(tc.want) {
				t.Fatalf("got %v superseded %d, want %v superseded %d", got, sup, tc.want, tc.superseded)
			}
			for id, title := range tc.want {
				if got[id] != title {
					t.Fatalf("%s: winner %q, want %q", id, got[id], title)
				}
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := json.Marshal(review.Event{Op: review.OpUpsert, Review: rv("a", 1, "t")})
	f.Add("generic:a", b)
	f.Add("x", []byte(`{"op":"delete","review":{"id":"x:y","provider":"x","external_id":"y","version":1}}`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		c, err := Decode(kafka.Message{Key: []byte(key), Value: value}, t0)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if c.Review.ID != key || c.Review.Version < 1 || strings.IndexByte(c.Review.Body, 0) >= 0 {
			t.Fatalf("accepted an invalid change %+v", c)
		}
	})
}
