package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// simStack is the write path with the simulator as the providers, sending
// its webhooks to the receiver (no trickle: the test makes the changes).
type simStack struct {
	receiver, processor, sink, simulator *proc
	sim                                  simClient
}

func startSimStack(t *testing.T, e *env) simStack {
	t.Helper()
	var st simStack
	st.receiver = newProc(t, e, "receiver", "receiver", "RECEIVER_ADDR", secretEnv()...)
	st.processor = newProc(t, e, "processor", "processor", "PROCESSOR_ADDR")
	st.sink = newProc(t, e, "sink", "sink", "SINK_ADDR")
	st.simulator = newProc(t, e, "simulator", "simulator", "SIMULATOR_ADDR", append(secretEnv(),
		"RECEIVER_URL="+st.receiver.url(), "SIMULATOR_TRICKLE_PER_S=0", "SIMULATOR_SEED="+strconv.FormatUint(e.seed, 10))...)
	for _, p := range []*proc{st.receiver, st.processor, st.sink, st.simulator} {
		p.start(t, 60*time.Second)
	}
	st.sim = simClient{url: st.simulator.url(), client: &http.Client{Timeout: 10 * time.Second}}
	return st
}

// simClient talks to the simulator's control API.
type simClient struct {
	url    string
	client *http.Client
}

func (s simClient) post(ctx context.Context, path string, body any, out any) (int, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	rb, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(rb, out); err != nil {
			return res.StatusCode, fmt.Errorf("%s answered %q: %w", path, rb, err)
		}
	}
	if res.StatusCode != http.StatusOK {
		return res.StatusCode, fmt.Errorf("%s answered %d %s", path, res.StatusCode, rb)
	}
	return res.StatusCode, nil
}

// faults sets one provider's polling API faults (an empty map resets them).
func (s simClient) faults(t *testing.T, providerName string, f map[string]any) {
	t.Helper()
	body := map[string]any{"provider": providerName}
	for k, v := range f {
		body[k] = v
	}
	if _, err := s.post(context.Background(), "/control/faults", body, nil); err != nil {
		t.Fatalf("set faults of %s: %v", providerName, err)
	}
}

type providerStats struct {
	RequestsTotal     int64   `json:"requests_total"`
	RateLimitedTotal  int64   `json:"rate_limited_total"`
	ErrorsInjected    int64   `json:"errors_injected_total"`
	UnavailableTotal  int64   `json:"unavailable_total"`
	MaxPerSecond      int64   `json:"max_per_second"`
	RateLimitPerS     float64 `json:"rate_limit_per_s"`
	FeedLength        int64   `json:"feed_length"`
	WebhooksSentAcked struct {
		Sent     int64 `json:"sent"`
		Attempts int64 `json:"attempts"`
		Acked    int64 `json:"acked"`
		Failed   int64 `json:"failed"` // given up
		Queued   int64 `json:"queued"`
	} `json:"webhooks"`
}

func (s simClient) stats() (map[string]providerStats, error) {
	res, err := s.client.Get(s.url + "/control/stats")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var out map[string]providerStats
	return out, json.NewDecoder(res.Body).Decode(&out)
}

var providers = []string{"generic", "cinescore", "reelpulse"}

// feedPaths are one small page of each provider's change feed.
var feedPaths = map[string]string{
	"generic":   "/providers/generic/v1/changes?page_size=1",
	"cinescore": "/providers/cinescore/api/v2/critiques?perPage=1",
	"reelpulse": "/providers/reelpulse/v3/changes?limit=1",
}

type drainResult struct{ sent, limited int }

// drain reads every provider's feed at perSecond requests per second each
// for d (bounded: d × perSecond × 3 requests), with the poller's key.
func drain(sim simClient, d time.Duration, perSecond int) drainResult {
	var r drainResult
	tick := time.NewTicker(time.Second / time.Duration(perSecond))
	defer tick.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		<-tick.C
		for _, p := range providers {
			req, _ := http.NewRequest(http.MethodGet, sim.url+feedPaths[p], nil)
			req.Header.Set("Authorization", "Bearer sim-key")
			res, err := sim.client.Do(req)
			if err != nil {
				continue
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			r.sent++
			if res.StatusCode == http.StatusTooManyRequests {
				r.limited++
			}
		}
	}
	return r
}

// Scenario 5: the simulator's catalogue changes (most of them poll-only)
// while one provider's API is down, then while every provider's API is in
// a 429 storm (limit 0.25 request/s) and one answers 500 to a third of its
// requests, then the poller killed (-9) and restarted; the poller must still
// bring every recorded change to the store.
func TestFaultProviderOutage(t *testing.T) {
	e := setup(t)
	rng := rand.New(rand.NewPCG(e.seed, 11))
	st := startSimStack(t, e)
	sim := st.sim
	poller := newProc(t, e, "poller", "poller", "POLLER_ADDR",
		"SIMULATOR_URL="+st.simulator.url(), "POLL_INTERVAL=1s", "POLL_BREAKER_TIMEOUT=3s", "POLL_BACKOFF_MAX=2s", "POLL_HTTP_TIMEOUT=5s")
	poller.start(t, 60*time.Second)
	t.Cleanup(func() {
		for _, p := range providers {
			_, _ = sim.post(context.Background(), "/control/faults", map[string]any{"provider": p}, nil)
		}
	})

	duration := pick(e, 15*time.Second, 30*time.Second)
	rate := pick(e, 10.0, 20.0)
	perProvider := pick(e, 40, 80)
	m := newModel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Logf("changes: %.0f/s for %s over %d reviews per provider, 30%% also as webhooks", rate, duration, perProvider)
	start := time.Now()
	made := simChanges(ctx, t, e, sim, m, simLoad{rate: rate, duration: duration, perProvider: perProvider, webhookShare: 0.3})

	// The fault schedule: one provider down, then a 429 storm on all
	// three with errors on one, then everything back to normal.
	downP := providers[rng.IntN(len(providers))]
	errP := providers[rng.IntN(len(providers))]
	downAt := between(rng, duration/10, duration/5)
	downFor := between(rng, duration/4, duration/3)
	stormFor := between(rng, duration/4, duration/3)
	sleepUntil(start.Add(downAt))
	t.Logf("+%s %s down for %s", time.Since(start).Round(time.Millisecond), downP, downFor)
	sim.faults(t, downP, map[string]any{"down": true})
	time.Sleep(downFor)
	sim.faults(t, downP, map[string]any{})
	t.Logf("+%s 429 storm (limit 0.25 requests/s) on every provider for %s, %s also answers 500 to 1/3 of requests",
		time.Since(start).Round(time.Millisecond), stormFor, errP)
	for _, p := range providers {
		f := map[string]any{"rate_limit_per_s": 0.25}
		if p == errP {
			f["error_rate"] = 0.33
		}
		sim.faults(t, p, f)
	}
	// Another client with the same key drains every bucket at 4 requests/s
	// each: the poller meets real 429s with Retry-After, not only the
	// lower limit it can follow from the headers.
	drained := drain(sim, stormFor, 4)
	t.Logf("a second client sent %d requests during the storm (%d answered 429)", drained.sent, drained.limited)
	for _, p := range providers {
		sim.faults(t, p, map[string]any{})
	}
	t.Logf("+%s faults cleared", time.Since(start).Round(time.Millisecond))
	// Then the poller itself: kill -9 while it catches up (a page may be
	// published with its cursor not yet saved), restarted shortly after.
	sleepUntil(time.Now().Add(between(rng, 500*time.Millisecond, 2*time.Second)))
	pollerDown := between(rng, 500*time.Millisecond, 2*time.Second)
	t.Logf("+%s kill -9 poller; restart after %s", time.Since(start).Round(time.Millisecond), pollerDown)
	poller.kill9()
	time.Sleep(pollerDown)
	poller.start(t, 60*time.Second)
	res := <-made
	t.Logf("load done after %s: %s", time.Since(start).Round(time.Millisecond), res)

	// Settled: the store equals the model (the poller must have read every
	// change), and both lags are 0.
	t.Logf("store equals the model %s after the load", e.converge(t, m, 3*time.Minute).Round(time.Millisecond))
	e.settle(t, time.Minute)
	e.check(t, m)
	if st, err := sim.stats(); err == nil {
		for _, p := range providers {
			s := st[p]
			t.Logf("%s: API requests %d, 429 %d, 500 injected %d, 503 down %d, max %d requests/s, feed %d, webhooks acked %d failed %d queued %d",
				p, s.RequestsTotal, s.RateLimitedTotal, s.ErrorsInjected, s.UnavailableTotal, s.MaxPerSecond, s.FeedLength,
				s.WebhooksSentAcked.Acked, s.WebhooksSentAcked.Failed, s.WebhooksSentAcked.Queued)
		}
	}
}

// simLoad is a stream of catalogue changes made through the simulator.
type simLoad struct {
	rate         float64       // changes per second
	duration     time.Duration // how long
	perProvider  int           // distinct reviews per provider
	webhookShare float64       // share of changes the simulator also sends as webhooks
}

// simResult counts what a simLoad made.
type simResult struct{ made, recorded, webhooks, refused int }

func (r simResult) String() string {
	return fmt.Sprintf("%d changes made, %d recorded by the simulator (%d also as webhooks), %d refused",
		r.made, r.recorded, r.webhooks, r.refused)
}

// simChanges makes the load's changes through the simulator's control API
// (upserts, and 15% deletes of live reviews, over every provider), records
// each one the simulator accepted in m, and sends the counts when done.
func simChanges(ctx context.Context, t *testing.T, e *env, sim simClient, m *model, l simLoad) <-chan simResult {
	out := make(chan simResult, 1)
	nonce := fmt.Sprintf("%06x", rand.New(rand.NewPCG(e.seed, 11)).Uint32()&0xffffff)
	go func() {
		var r simResult
		defer func() { out <- r }()
		alive := map[string]bool{}
		lrng := rand.New(rand.NewPCG(e.seed, 13))
		tick := time.NewTicker(time.Duration(float64(time.Second) / l.rate))
		defer tick.Stop()
		end := time.After(l.duration)
		for {
			select {
			case <-ctx.Done():
				return
			case <-end:
				return
			case <-tick.C:
			}
			prov := providers[lrng.IntN(len(providers))]
			i := lrng.IntN(l.perProvider)
			rid := fmt.Sprintf("f%s-%d", nonce, i)
			key := prov + ":" + rid
			op := "upsert"
			if alive[key] && lrng.Float64() < 0.15 {
				op = "delete"
			}
			title := fmt.Sprintf("%s %d", rid, r.made)
			data := map[string]any{"review_id": rid}
			if op == "upsert" {
				data["movie"] = map[string]any{"imdb_id": fmt.Sprintf("tt%07d", 2000000+i%20), "title": "Fault movie"}
				data["title"] = title
				data["author"] = "faults"
				data["rating"] = map[string]any{"value": 1 + i%10, "scale": 10}
			}
			wh := lrng.Float64() < l.webhookShare
			var res struct {
				ID      string `json:"id"`
				Version int64  `json:"version"`
			}
			code, err := sim.post(ctx, "/control/reviews", map[string]any{"provider": prov, "op": op, "review": data, "webhook": wh}, &res)
			r.made++
			c := change{id: key, deleted: op == "delete", title: title}
			switch {
			case code == http.StatusOK:
				c.id, c.version = res.ID, res.Version
				m.ack(c)
				alive[key] = op == "upsert"
				r.recorded++
				if wh {
					r.webhooks++
				}
			default:
				r.refused++
				t.Logf("simulator refused a change: %v", err)
			}
		}
	}()
	return out
}

// converge waits (up to limit) until the store equals the model, and
// returns how long it took.
func (e *env) converge(t *testing.T, m *model, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last []string
	for {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		rows, err := e.storeRows(cctx)
		ccancel()
		if err == nil {
			last, _ = m.verify(rows)
			if len(last) == 0 {
				return time.Since(start)
			}
		}
		if time.Since(start) > limit {
			t.Errorf("store did not converge within %s; %d problems, first: %s", limit, len(last), strings.Join(last[:min(5, len(last))], "; "))
			return time.Since(start)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
