package app

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/analytics/internal/stats"
	"github.com/reviewpipe/reviewpipe/services/analytics/internal/store"
)

var movies = []string{"tt0000001", "tt0000002", "tt0000003"}

// history makes normalized records as the processor writes them, with the
// duplicates and replays at-least-once delivery brings, and returns the
// statistics they must lead to.
func history(r *rand.Rand, prefix string, reviews int) ([]kafka.Message, map[string]stats.Movie) {
	var msgs []kafka.Message
	best := map[string]review.Event{}
	for k := range reviews {
		id := fmt.Sprintf("%s%d", prefix, k)
		var evs []review.Event
		for v := int64(1); v <= int64(1+r.IntN(5)); v++ {
			e := review.Event{Op: review.OpUpsert, Review: review.Review{ID: "generic:" + id, Provider: "generic", ExternalID: id,
				MovieID: movies[r.IntN(len(movies))], Version: v, SourceUpdatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
			switch r.IntN(5) {
			case 0:
				e.Op, e.Review.MovieID = review.OpDelete, ""
			case 1: // unrated
			default:
				rating := r.IntN(101)
				e.Review.Rating = &rating
			}
			evs = append(evs, e)
			best[e.Review.ID] = e
		}
		// In order per key, with repeats of earlier changes (a processor
		// resend, a reconcile repair) in between.
		for i, e := range evs {
			for range 1 + r.IntN(2) {
				b, _ := e.Marshal()
				msgs = append(msgs, kafka.Message{Key: []byte(e.Review.ID), Value: b})
			}
			if i > 0 && r.IntN(3) == 0 {
				b, _ := evs[r.IntN(i)].Marshal()
				msgs = append(msgs, kafka.Message{Key: []byte(e.Review.ID), Value: b})
			}
		}
	}
	want := map[string]stats.Movie{}
	d := stats.Delta{}
	for _, e := range best {
		stats.Apply(nil, e, d)
	}
	for id, m := range d {
		want[id] = *m
	}
	return msgs, want
}

func produce(t *testing.T, st *testenv.Stack, msgs []kafka.Message) {
	t.Helper()
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicNormalized)})
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

type running struct {
	app    *App
	srv    *httptest.Server
	cancel context.CancelFunc
	done   chan error
}

func startApp(t *testing.T, st *testenv.Stack) *running {
	t.Helper()
	a, err := New(Config{Brokers: st.Brokers, Names: st.Names}, store.New(st.DB, Consumer(st.Names)), zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Routes(mux)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{app: a, srv: httptest.NewServer(mux), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("analytics: %v", err)
	}
	r.srv.Close()
}

// waitApplied waits until the offsets stored in PostgreSQL reach the end of
// every partition of the normalized topic.
func waitApplied(t *testing.T, st *testenv.Stack) {
	t.Helper()
	topic := st.Topic(kafkax.TopicNormalized)
	s := store.New(st.DB, Consumer(st.Names))
	testenv.Eventually(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ends, err := kafkax.EndOffsets(ctx, st.Brokers, topic)
		if err != nil {
			return err
		}
		for p, end := range ends {
			if end == 0 {
				continue
			}
			next, _, err := s.NextOffset(ctx, topic, p)
			if err != nil {
				return err
			}
			if next != end {
				return fmt.Errorf("partition %d: applied up to %d of %d", p, next, end)
			}
		}
		return nil
	})
}

func checkStats(t *testing.T, url string, want map[string]stats.Movie) {
	t.Helper()
	for _, id := range movies {
		res, err := http.Get(url + "/v1/movies/" + id + "/rating-stats")
		if err != nil {
			t.Fatal(err)
		}
		var got MovieStats
		err = json.NewDecoder(res.Body).Decode(&got)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %v", id, res.StatusCode, err)
		}
		w := want[id]
		var hist [stats.Buckets]int64
		copy(hist[:], got.Histogram)
		if got.Reviews != w.Reviews || got.Count != w.Ratings || hist != w.Histogram || len(got.Histogram) != stats.Buckets {
			t.Errorf("%s: got %+v, want %+v", id, got, w)
		}
		if mean, ok := w.Mean(); ok != (got.Mean != nil) || (ok && *got.Mean != mean) {
			t.Errorf("%s: mean %v, want %v", id, got.Mean, mean)
		}
	}
}

// The statistics follow the topic through duplicates, updates, deletes and
// a restart, and records the consumer does not understand are skipped.
func TestConsumerKeepsStatistics(t *testing.T) {
	st := testenv.New(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))

	first, want := history(r, "a", 40)
	first = append(first,
		kafka.Message{Key: []byte("generic:x"), Value: []byte("not json")},
		kafka.Message{Key: []byte("generic:y"), Value: []byte(`{"op":"merge","review":{"id":"generic:y","version":1}}`)})
	produce(t, st, first)
	a := startApp(t, st)
	waitApplied(t, st)
	checkStats(t, a.srv.URL, want)

	// A restart, then more changes to the same reviews and new ones.
	a.stop(t)
	second, _ := history(r, "b", 20)
	var allBest []kafka.Message
	allBest = append(allBest, first...)
	allBest = append(allBest, second...)
	produce(t, st, second)
	b := startApp(t, st)
	waitApplied(t, st)
	checkStats(t, b.srv.URL, recompute(t, allBest))

	res, err := http.Get(b.srv.URL + "/v1/movies/nm123/rating-stats")
	if err != nil || res.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed id: %v %v", res.StatusCode, err)
	}
	res.Body.Close()
	var unknown MovieStats
	res, _ = http.Get(b.srv.URL + "/v1/movies/tt9999999/rating-stats")
	_ = json.NewDecoder(res.Body).Decode(&unknown)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || unknown.Count != 0 || unknown.Mean != nil || unknown.UpdatedAt != nil {
		t.Fatalf("unknown movie: %d %+v", res.StatusCode, unknown)
	}
}

// recompute derives the statistics from scratch from each review's
// winning change among msgs.
func recompute(t *testing.T, msgs []kafka.Message) map[string]stats.Movie {
	t.Helper()
	best := map[string]review.Event{}
	for _, m := range msgs {
		ev, reason := decode(m)
		if reason != "" {
			continue
		}
		if b, ok := best[ev.Review.ID]; !ok || dedupe.EntryOf(ev, -1).Compare(dedupe.EntryOf(b, -1)) > 0 {
			best[ev.Review.ID] = ev
		}
	}
	d := stats.Delta{}
	for _, e := range best {
		stats.Apply(nil, e, d)
	}
	out := map[string]stats.Movie{}
	for id, m := range d {
		out[id] = *m
	}
	return out
}
