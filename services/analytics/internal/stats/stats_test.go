package stats

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

func ev(op review.Op, id, movie string, version int64, rating *int) review.Event {
	return review.Event{Op: op, Review: review.Review{
		ID: "generic:" + id, Provider: "generic", ExternalID: id, MovieID: movie, Rating: rating, Version: version,
		SourceUpdatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}}
}

func up(id, movie string, version int64, rating int) review.Event {
	return ev(review.OpUpsert, id, movie, version, &rating)
}

func unrated(id, movie string, version int64) review.Event {
	return ev(review.OpUpsert, id, movie, version, nil)
}

func del(id string, version int64) review.Event { return ev(review.OpDelete, id, "", version, nil) }

// apply runs events through Apply and returns the movies' statistics.
func apply(events ...review.Event) map[string]Movie {
	state := map[string]Review{}
	d := Delta{}
	for _, e := range events {
		var prev *Review
		if r, ok := state[e.Review.ID]; ok {
			prev = &r
		}
		next, _ := Apply(prev, e, d)
		state[e.Review.ID] = next
	}
	out := map[string]Movie{}
	for id, m := range d {
		if !m.IsZero() {
			out[id] = *m
		}
	}
	return out
}

func movie(reviews int64, ratings ...int) Movie {
	m := Movie{Reviews: reviews}
	for _, r := range ratings {
		m.Ratings++
		m.Sum += int64(r)
		m.Histogram[Bucket(r)]++
	}
	return m
}

func TestApply(t *testing.T) {
	const a, b = "tt0000001", "tt0000002"
	cases := []struct {
		name   string
		events []review.Event
		want   map[string]Movie
	}{
		{"one rating", []review.Event{up("r1", a, 1, 80)}, map[string]Movie{a: movie(1, 80)}},
		{"unrated review counts as a review only", []review.Event{unrated("r1", a, 1)}, map[string]Movie{a: movie(1)}},
		{"update replaces the old rating", []review.Event{up("r1", a, 1, 80), up("r1", a, 2, 40)}, map[string]Movie{a: movie(1, 40)}},
		{"update drops the rating", []review.Event{up("r1", a, 1, 80), unrated("r1", a, 2)}, map[string]Movie{a: movie(1)}},
		{"update moves the review to another movie", []review.Event{up("r1", a, 1, 80), up("r1", b, 2, 60)}, map[string]Movie{b: movie(1, 60)}},
		{"delete removes the contribution", []review.Event{up("r1", a, 1, 80), up("r2", a, 1, 20), del("r1", 2)}, map[string]Movie{a: movie(1, 20)}},
		{"redelivery changes nothing", []review.Event{up("r1", a, 1, 80), up("r1", a, 1, 80), up("r1", a, 1, 80)}, map[string]Movie{a: movie(1, 80)}},
		{"an older version after a newer one is ignored", []review.Event{up("r1", a, 2, 40), up("r1", a, 1, 80)}, map[string]Movie{a: movie(1, 40)}},
		{"an older upsert does not revive a delete", []review.Event{up("r1", a, 1, 80), del("r1", 3), up("r1", a, 2, 90)}, nil},
		{"an upsert at the delete's version does not revive it", []review.Event{del("r1", 3), up("r1", a, 3, 90)}, nil},
		{"a newer upsert revives", []review.Event{up("r1", a, 1, 80), del("r1", 3), up("r1", a, 4, 10)}, map[string]Movie{a: movie(1, 10)}},
		{"delete of an unseen review", []review.Event{del("r1", 3)}, nil},
		{"100 goes to the last bucket", []review.Event{up("r1", a, 1, 100), up("r2", a, 1, 90), up("r3", a, 1, 0), up("r4", a, 1, 9)},
			map[string]Movie{a: {Reviews: 4, Ratings: 4, Sum: 199, Histogram: [10]int64{2, 0, 0, 0, 0, 0, 0, 0, 0, 2}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := apply(c.events...)
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for id, w := range c.want {
				if got[id] != w {
					t.Fatalf("%s: got %+v, want %+v", id, got[id], w)
				}
			}
		})
	}
	m := movie(3, 80, 41)
	if mean, ok := m.Mean(); !ok || mean != 60.5 {
		t.Fatalf("mean %v %v", mean, ok)
	}
	if _, ok := movie(2).Mean(); ok {
		t.Fatal("a movie without ratings has a mean")
	}
}

var seedFlag = flag.Uint64("stats.seed", 0, "seed of the property test (0: from the clock)")

// Whatever the order and however often each change arrives, the
// incremental statistics equal those computed from scratch from each
// review's winning change.
func TestPropertyIncrementalEqualsRecomputed(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -stats.seed=%d)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 0))
	movies := []string{"tt0000001", "tt0000002", "tt0000003"}
	for round := range 300 {
		var events []review.Event
		best := map[string]review.Event{}
		for k := range 1 + r.IntN(20) {
			id := fmt.Sprintf("r%d", k)
			for v := int64(1); v <= int64(1+r.IntN(6)); v++ {
				var e review.Event
				switch r.IntN(6) {
				case 0:
					e = del(id, v)
				case 1:
					e = unrated(id, movies[r.IntN(len(movies))], v)
				default:
					e = up(id, movies[r.IntN(len(movies))], v, r.IntN(101))
				}
				for range 1 + r.IntN(3) {
					events = append(events, e)
				}
				if b, ok := best[e.Review.ID]; !ok || dedupe.EntryOf(e, -1).Compare(dedupe.EntryOf(b, -1)) > 0 {
					best[e.Review.ID] = e
				}
			}
		}
		r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
		got := apply(events...)

		want := map[string]Movie{}
		for _, e := range best {
			if e.Op == review.OpDelete {
				continue
			}
			m := want[e.Review.MovieID]
			m.add(Review{MovieID: e.Review.MovieID, Rating: e.Review.Rating}, 1)
			want[e.Review.MovieID] = m
		}
		for _, id := range movies {
			if got[id] != want[id] {
				t.Fatalf("round %d, %s: incremental %+v, recomputed %+v", round, id, got[id], want[id])
			}
		}
	}
}
