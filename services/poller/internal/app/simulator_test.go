package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/store"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

// startSimulator runs the simulator binary (no trickle, no webhooks) until
// the test ends and returns its URL.
func startSimulator(t *testing.T) string {
	t.Helper()
	url, _ := runSimulator(t, testenv.FreeAddr(t))
	return url
}

// runSimulator runs the real provider simulator (services/simulator) on
// addr until stop is called or the test ends.
func runSimulator(t *testing.T, addr string) (url string, stop func()) {
	t.Helper()
	p := testenv.Spawn(t, "simulator", testenv.Binary(t, "simulator"), "SIMULATOR_ADDR="+addr,
		"SIMULATOR_TRICKLE_PER_S=0", "PROVIDER_API_KEY=sim-key", "RECEIVER_URL=http://127.0.0.1:1", "LOG_LEVEL=warn")
	p.Addr = addr
	p.WaitReady(t, "/healthz")
	return p.URL(), func() { _ = p.Stop() }
}

func simPost(t *testing.T, url, path string, body any, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	res, err := http.Post(url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var e map[string]any
		json.NewDecoder(res.Body).Decode(&e)
		t.Fatalf("POST %s %s: %d %v", path, b, res.StatusCode, e)
	}
	if out != nil {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

func simGet(t *testing.T, url string, out any) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// Against the real simulator, all three providers: every change of each
// catalogue arrives by polling (generic's updated_since pages, cinescore's
// modifiedSince pages, reelpulse's change tokens), while cinescore answers
// half its requests with 500 and reelpulse's limit is lowered to 2/s; no
// provider ever answers 429 (the budget keeps to each limit); a refresh
// request reads one movie at every provider and a backfill walks
// reelpulse's feed from a start time.
func TestAgainstTheSimulator(t *testing.T) {
	st := testenv.New(t)
	sim := startSimulator(t)
	adapters := provider.Default()
	want := map[string]bool{} // "{provider}:{review_id}:{version}"
	movies := []string{"tt0111161", "tt0068646", "tt0133093"}
	for _, p := range []string{"generic", "cinescore", "reelpulse"} {
		for i := range 24 {
			id := fmt.Sprintf("%s-%02d", p[:2], i%18)
			op := "upsert"
			if i == 23 {
				op = "delete"
			}
			data := provider.GenericData{ReviewID: id}
			if op == "upsert" {
				data.Movie = &provider.GenericMovie{ImdbID: movies[i%3], Title: "A film"}
				data.Author, data.Title, data.Body = "Critic", "Title", fmt.Sprintf("Body %d", i)
				data.Rating = &provider.GenericRating{Value: float64(i % 11), Scale: 10}
				data.Language = "en-US"
			}
			var res struct {
				ID      string `json:"id"`
				Version int64  `json:"version"`
			}
			simPost(t, sim, "/control/reviews", map[string]any{"provider": p, "op": op, "review": data, "webhook": false}, &res)
			want[fmt.Sprintf("%s:%d", res.ID, res.Version)] = true
		}
	}
	simPost(t, sim, "/control/faults", map[string]any{"provider": "cinescore", "error_rate": 0.5}, nil)
	simPost(t, sim, "/control/faults", map[string]any{"provider": "reelpulse", "rate_limit_per_s": 2}, nil)

	cfg := Config{Holder: "sim", Interval: time.Second, PageSize: 5, BackoffBase: 50 * time.Millisecond,
		BackoffMax: time.Second, BreakerTimeout: time.Second, HTTPTimeout: 3 * time.Second, LeaseTTL: 5 * time.Second, QueueCheck: 100 * time.Millisecond}
	for _, p := range []string{"generic", "cinescore", "reelpulse"} {
		cfg.Providers = append(cfg.Providers, ProviderConfig{Name: p, BaseURL: sim, APIKey: "sim-key", Rate: map[string]float64{
			"generic": 20, "cinescore": 10, "reelpulse": 5}[p]})
	}
	start(t, st, cfg)

	published := func(source envelope.Source) map[string]int {
		out := map[string]int{}
		for _, r := range readRaw(t, st) {
			if source != "" && r.env.Source != source {
				continue
			}
			a, _ := adapters.Get(r.env.Provider)
			ev, err := a.Normalize(r.env.Payload, time.Now())
			if err != nil {
				t.Fatalf("published %s event does not normalize: %v", r.env.Provider, err)
			}
			if r.key != ev.Review.ID {
				t.Fatalf("record key %q, want %q", r.key, ev.Review.ID)
			}
			out[fmt.Sprintf("%s:%d", ev.Review.ID, ev.Review.Version)]++
		}
		return out
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		if m := missing(want, published(envelope.SourcePoll)); len(m) > 0 {
			return fmt.Errorf("%d of %d changes not polled yet, e.g. %v", len(m), len(want), m[:min(3, len(m))])
		}
		return nil
	})

	// A refresh of one movie at every provider, and a backfill of reelpulse.
	produce(t, st,
		envelope.SyncRequest{RequestID: "rf_sim", Kind: envelope.SyncRefresh, MovieID: movies[0], RequestedAt: time.Now().UTC()},
		envelope.SyncRequest{RequestID: "bf_sim", Kind: envelope.SyncBackfill, Provider: "reelpulse",
			Since: time.Now().Add(-time.Hour).UTC(), RequestedAt: time.Now().UTC()})
	var truth struct {
		Reviews []struct {
			ID      string `json:"id"`
			Version int64  `json:"version"`
		} `json:"reviews"`
	}
	simGet(t, sim+"/control/truth?movie_id="+movies[0], &truth)
	wantRefresh := map[string]bool{}
	for _, r := range truth.Reviews {
		wantRefresh[fmt.Sprintf("%s:%d", r.ID, r.Version)] = true
	}
	wantBackfill := map[string]bool{}
	for k := range want {
		if strings.HasPrefix(k, "reelpulse:") {
			wantBackfill[k] = true
		}
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		if m := missing(wantRefresh, published(envelope.SourceRefresh)); len(m) > 0 {
			var jobs []string
			rows, _ := st.DB.Query(context.Background(), `SELECT provider || ' ' || status || ' ' || coalesce(error, '') FROM refresh_jobs`)
			for rows.Next() {
				var s string
				rows.Scan(&s)
				jobs = append(jobs, s)
			}
			rows.Close()
			return fmt.Errorf("refresh: %d of %d current reviews not published yet, e.g. %v; jobs %v", len(m), len(wantRefresh), m[:min(3, len(m))], jobs)
		}
		if m := missing(wantBackfill, published(envelope.SourceBackfill)); len(m) > 0 {
			return fmt.Errorf("backfill: %d of %d changes not published yet", len(m), len(wantBackfill))
		}
		b, err := store.New(st.DB).GetBackfill(context.Background(), "bf_sim")
		if err != nil || b == nil || b.Status != store.StatusDone || b.Events != int64(len(wantBackfill)) {
			return fmt.Errorf("backfill job %+v (%v)", b, err)
		}
		return nil
	})

	var stats map[string]struct {
		Requests     int64 `json:"requests_total"`
		RateLimited  int64 `json:"rate_limited_total"`
		Errors       int64 `json:"errors_injected_total"`
		Unauthorized int64 `json:"unauthorized_total"`
		MaxPerSecond int64 `json:"max_per_second"`
	}
	simGet(t, sim+"/control/stats", &stats)
	for p, limit := range map[string]int64{"generic": 20, "cinescore": 10, "reelpulse": 2} {
		s := stats[p]
		t.Logf("%s: %d requests, %d answered 429, %d injected errors, busiest second %d (limit %d/s)",
			p, s.Requests, s.RateLimited, s.Errors, s.MaxPerSecond, limit)
		if s.RateLimited != 0 || s.MaxPerSecond > limit || s.Unauthorized != 0 || s.Requests == 0 {
			t.Errorf("%s: %+v; want no 429, at most %d requests in any second", p, s, limit)
		}
	}
	if stats["cinescore"].Errors == 0 {
		t.Error("cinescore injected no errors: the fault was not exercised")
	}
}

// A reelpulse change token from before the provider's feed restarted is
// answered 410 Gone: the poller reads the new feed from its beginning and
// misses none of its changes.
func TestReelpulseFeedRestartIsReadAgain(t *testing.T) {
	st := testenv.New(t)
	addr := testenv.FreeAddr(t)
	sim, stop := runSimulator(t, addr)
	add := func(n int, prefix string) map[string]bool {
		want := map[string]bool{}
		for i := range n {
			data := provider.GenericData{ReviewID: fmt.Sprintf("%s%02d", prefix, i),
				Movie: &provider.GenericMovie{ImdbID: "tt0133093", Title: "The Matrix"}, Body: "b"}
			var res struct {
				ID      string `json:"id"`
				Version int64  `json:"version"`
			}
			simPost(t, sim, "/control/reviews", map[string]any{"provider": "reelpulse", "op": "upsert", "review": data}, &res)
			want[fmt.Sprintf("%s:%d", res.ID, res.Version)] = true
		}
		return want
	}
	polled := func() map[string]int {
		out := map[string]int{}
		for _, r := range readRaw(t, st) {
			ev, err := provider.Reelpulse{}.Normalize(r.env.Payload, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			out[fmt.Sprintf("%s:%d", ev.Review.ID, ev.Review.Version)]++
		}
		return out
	}
	before := add(7, "old")
	cfg := Config{Holder: "rp", Interval: 200 * time.Millisecond, PageSize: 3, BackoffBase: 50 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond, HTTPTimeout: 2 * time.Second, LeaseTTL: 5 * time.Second,
		Providers: []ProviderConfig{{Name: "reelpulse", BaseURL: sim, APIKey: "sim-key", Rate: 5}}}
	r := start(t, st, cfg)
	testenv.Eventually(t, 30*time.Second, func() error {
		if m := missing(before, polled()); len(m) > 0 {
			return fmt.Errorf("%d changes not polled yet", len(m))
		}
		return nil
	})
	stop()
	sim, _ = runSimulator(t, addr) // a new feed, a new token epoch
	after := add(5, "new")
	testenv.Eventually(t, 30*time.Second, func() error {
		if m := missing(after, polled()); len(m) > 0 {
			return fmt.Errorf("%d changes of the restarted feed not polled yet", len(m))
		}
		return nil
	})
	if n := gauge(t, r.reg, "reviewpipe_poller_requests_total", map[string]string{"provider": "reelpulse", "stream": "live", "outcome": "gone"}); n < 1 {
		t.Errorf("no request answered 410 Gone (%v): the restart was not exercised", n)
	}
}
