package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/analytics/internal/stats"
)

func ev(op review.Op, id, movie string, version int64, rating *int) *review.Event {
	return &review.Event{Op: op, Review: review.Review{
		ID: "generic:" + id, Provider: "generic", ExternalID: id, MovieID: movie, Rating: rating, Version: version,
		SourceUpdatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}}
}

func up(id, movie string, version int64, rating int) *review.Event {
	return ev(review.OpUpsert, id, movie, version, &rating)
}

func records(first int64, evs ...*review.Event) []Record {
	out := make([]Record, len(evs))
	for i, e := range evs {
		out[i] = Record{Offset: first + int64(i), Event: e}
	}
	return out
}

func TestApplyIsExactlyOnce(t *testing.T) {
	st := testenv.New(t)
	s := New(st.DB, "test.analytics")
	ctx := context.Background()
	const m1, m2 = "tt0000001", "tt0000002"

	if _, ok, err := s.NextOffset(ctx, "topic", 0); err != nil || ok {
		t.Fatalf("fresh partition: %v %v", ok, err)
	}
	b1 := records(0, up("r1", m1, 1, 80), up("r2", m1, 1, 40), up("r3", m2, 1, 100), nil, up("r1", m1, 1, 80))
	res, err := s.Apply(ctx, "topic", 0, b1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Decisions[dedupe.New] != 3 || res.Decisions[dedupe.Duplicate] != 1 || res.Movies != 2 {
		t.Fatalf("first batch %+v", res)
	}
	// The same batch again (a redelivery after a lost Kafka commit): no effect.
	res, err = s.Apply(ctx, "topic", 0, b1)
	if err != nil || res.AlreadyApplied != len(b1) || res.Movies != 0 {
		t.Fatalf("redelivered batch: %+v, %v", res, err)
	}
	if next, ok, _ := s.NextOffset(ctx, "topic", 0); !ok || next != 5 {
		t.Fatalf("next offset %d %v, want 5", next, ok)
	}
	// An overlapping batch: the known part is skipped, the rest applied.
	b2 := append(b1[3:], records(5, up("r1", m2, 2, 20), ev(review.OpDelete, "r2", "", 2, nil), up("r2", m1, 1, 40))...)
	res, err = s.Apply(ctx, "topic", 0, b2)
	if err != nil || res.AlreadyApplied != 2 || res.Decisions[dedupe.Update] != 2 || res.Decisions[dedupe.Stale] != 1 {
		t.Fatalf("overlapping batch: %+v, %v", res, err)
	}

	want := map[string]stats.Movie{
		m1: {},
		m2: {Reviews: 2, Ratings: 2, Sum: 120, Histogram: [10]int64{0, 0, 1, 0, 0, 0, 0, 0, 0, 1}},
	}
	for id, w := range want {
		got, ok, err := s.Movie(ctx, id)
		if err != nil || !ok || got.Stats != w {
			t.Fatalf("%s: %+v (%v %v), want %+v", id, got.Stats, ok, err, w)
		}
	}
	var mean *float64
	if err := st.DB.QueryRow(ctx, `SELECT mean_rating FROM analytics_movie_ratings WHERE movie_id = $1`, m2).Scan(&mean); err != nil || mean == nil || *mean != 60 {
		t.Fatalf("mean_rating %v, %v", mean, err)
	}
	if _, ok, _ := s.Movie(ctx, "tt9999999"); ok {
		t.Fatal("an unknown movie has statistics")
	}
}

// Partitions apply in parallel; their batches touch the same movies in
// different orders without deadlocking, and the totals add up.
func TestParallelPartitions(t *testing.T) {
	st := testenv.New(t)
	s := New(st.DB, "test.analytics")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	movies := []string{"tt0000001", "tt0000002", "tt0000003", "tt0000004"}
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for p := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range 10 {
				var evs []*review.Event
				for i := range 20 {
					m := movies[(p+i+b)%len(movies)]
					evs = append(evs, up(fmt.Sprintf("p%d-%d", p, i), m, int64(b+1), (p*7+i+b)%101))
				}
				if _, err := s.Apply(ctx, "topic", p, records(int64(b*20), evs...)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var total stats.Movie
	for _, m := range movies {
		got, _, err := s.Movie(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		total.Merge(got.Stats)
	}
	// 6 partitions x 20 reviews, each at its last version (b = 9).
	var want stats.Movie
	for p := range 6 {
		for i := range 20 {
			r := (p*7 + i + 9) % 101
			want.Reviews++
			want.Ratings++
			want.Sum += int64(r)
			want.Histogram[stats.Bucket(r)]++
		}
	}
	if total != want {
		t.Fatalf("totals %+v, want %+v", total, want)
	}
}
