package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/webhooks"
)

const apiKey = "test-key"

// signingKeys are "<provider>-key" for every registered provider.
var signingKeys = func() map[string][]byte {
	m := map[string][]byte{}
	for _, r := range provider.Registered() {
		m[r.Name()] = []byte(r.Name() + "-key")
	}
	return m
}()

// delivery is one webhook attempt the test receiver saw.
type delivery struct {
	provider string
	id       string
	body     []byte
	verified bool
}

// testReceiver verifies signatures like the real receiver (pkg/webhook)
// and answers 500 to the first failFirst attempts of each webhook-id.
type testReceiver struct {
	failFirst int
	mu        sync.Mutex
	got       []delivery
	tries     map[string]int
}

func (rc *testReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("provider")
	body, _ := io.ReadAll(r.Body)
	_, err := webhook.Verifier{Keys: [][]byte{signingKeys[p]}}.Verify(r.Header, body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	id := r.Header.Get(webhook.HeaderID)
	rc.got = append(rc.got, delivery{provider: p, id: id, body: body, verified: err == nil})
	rc.tries[id]++
	switch {
	case err != nil:
		obs.WriteError(w, http.StatusUnauthorized, err.Error())
	case rc.tries[id] <= rc.failFirst:
		obs.WriteError(w, http.StatusInternalServerError, "try again")
	default:
		obs.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
	}
}

func (rc *testReceiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

type testSim struct {
	url  string
	app  *App
	recv *testReceiver
	snd  *webhooks.Sender
}

func newTestSim(t *testing.T, cfg Config, failFirst int) *testSim {
	t.Helper()
	recv := &testReceiver{failFirst: failFirst, tries: map[string]int{}}
	rmux := http.NewServeMux()
	rmux.Handle("POST /webhooks/{provider}", recv)
	rsrv := httptest.NewServer(rmux)
	t.Cleanup(rsrv.Close)

	if cfg.APIKey == "" {
		cfg.APIKey = apiKey
	}
	reg := prometheus.NewRegistry()
	snd, err := webhooks.New(webhooks.Config{ReceiverURL: rsrv.URL, Keys: signingKeys,
		Base: 20 * time.Millisecond, Cap: 100 * time.Millisecond}, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, snd, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	obs.Mount(mux, reg, &obs.Health{})
	a.Routes(mux)
	srv := httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = snd.Run(ctx) }()
	go func() { defer wg.Done(); _ = a.Trickle(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); srv.Close() })
	return &testSim{url: srv.URL, app: a, recv: recv, snd: snd}
}

func highLimits() map[string]float64 {
	return map[string]float64{"generic": 10000, "cinescore": 10000, "reelpulse": 10000}
}

// get calls a polling API with the key; it returns the answer and its body.
func (s *testSim) get(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func (s *testSim) post(t *testing.T, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = bytes.NewBufferString(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	res, err := http.Post(s.url+path, "application/json", rd)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func (s *testSim) change(t *testing.T, p, op string, d provider.GenericData, hook bool) ReviewResponse {
	t.Helper()
	code, b := s.post(t, "/control/reviews", ReviewRequest{Provider: p, Op: op, Review: &d, Webhook: hook})
	if code != http.StatusOK {
		t.Fatalf("control %s %s %s: %d %s", p, op, d.ReviewID, code, b)
	}
	var res ReviewResponse
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func data(id, movie string) provider.GenericData {
	return provider.GenericData{ReviewID: id, Movie: &provider.GenericMovie{ImdbID: movie, Title: "A film"},
		Author: "Zoë", Title: "Title", Body: "Body 🎬", Rating: &provider.GenericRating{Value: 4, Scale: 5}, Language: "en"}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pager walks one provider's change feed the way a poller would: resume
// from where the last page said, page through, return every event.
type pager func(t *testing.T, s *testSim, between func()) []json.RawMessage

// genericPager keeps updated_since fixed and walks page numbers, then
// resumes from next_updated_since.
func genericPager(since string) pager {
	return func(t *testing.T, s *testSim, between func()) []json.RawMessage {
		var out []json.RawMessage
		for page := 1; ; page++ {
			res, b := s.get(t, fmt.Sprintf("/providers/generic/v1/changes?updated_since=%s&page=%d&page_size=3", url.QueryEscape(since), page))
			if res.StatusCode != 200 {
				t.Fatalf("page %d: %d %s", page, res.StatusCode, b)
			}
			var p genericPage
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			out = append(out, p.Events...)
			between()
			if !p.HasMore {
				since = p.NextUpdatedSince
				return out
			}
		}
	}
}

// cinescorePager restarts at page 1 from nextModifiedSince after each page.
func cinescorePager(since int64) pager {
	return func(t *testing.T, s *testSim, between func()) []json.RawMessage {
		var out []json.RawMessage
		for {
			res, b := s.get(t, fmt.Sprintf("/providers/cinescore/api/v2/critiques?modifiedSince=%d&perPage=3", since))
			if res.StatusCode != 200 {
				t.Fatalf("%d %s", res.StatusCode, b)
			}
			var p cinescorePage
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			out = append(out, p.Critiques...)
			since = *p.NextModifiedSince
			between()
			if p.Page >= p.TotalPages {
				return out
			}
		}
	}
}

func reelpulsePager() pager {
	token := ""
	return func(t *testing.T, s *testSim, between func()) []json.RawMessage {
		var out []json.RawMessage
		for {
			res, b := s.get(t, "/providers/reelpulse/v3/changes?limit=3&token="+url.QueryEscape(token))
			if res.StatusCode != 200 {
				t.Fatalf("%d %s", res.StatusCode, b)
			}
			var p reelpulsePage
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			out = append(out, p.Changes...)
			token = *p.NextToken
			between()
			if !p.HasMore {
				return out
			}
		}
	}
}

// Paging through each provider's feed while changes keep arriving reads
// every change exactly once, across pages and across polls.
func TestFeedPagingCoversEveryChangeOnce(t *testing.T) {
	s := newTestSim(t, Config{RateLimits: highLimits()}, 0)
	for name, walk := range map[string]pager{
		"generic":   genericPager("2000-01-01T00:00:00Z"),
		"cinescore": cinescorePager(0),
		"reelpulse": reelpulsePager(),
	} {
		t.Run(name, func(t *testing.T) {
			movies := []string{"tt0000001", "tt0000002"}
			n := 0
			add := func() {
				id := fmt.Sprintf("r%d", n%7) // edits of the same reviews too
				s.change(t, name, "upsert", data(id, movies[n%2]), n%2 == 0)
				n++
			}
			for range 20 {
				add()
			}
			adapter := s.app.Catalog(name).Adapter()
			seen := map[string]int{}
			record := func(evs []json.RawMessage) {
				for _, e := range evs {
					ev, err := adapter.Normalize(e, time.Time{})
					if err != nil {
						t.Fatalf("feed event does not normalize: %v: %s", err, e)
					}
					seen[fmt.Sprintf("%s@%d", ev.Review.ID, ev.Review.Version)]++
				}
			}
			adds := 0
			between := func() {
				if adds < 6 {
					add()
					adds++
				}
			}
			record(walk(t, s, between)) // first poll: changes arrive between its pages
			record(walk(t, s, func() {}))
			if len(seen) != n {
				t.Fatalf("saw %d distinct changes, made %d", len(seen), n)
			}
			for k, c := range seen {
				if c != 1 {
					t.Errorf("%s seen %d times", k, c)
				}
			}
			if again := walk(t, s, func() {}); len(again) != 0 {
				t.Fatalf("a poll with nothing new lists %d changes", len(again))
			}
		})
	}
}

func TestPollAndWebhookNormalizeIdentically(t *testing.T) {
	s := newTestSim(t, Config{RateLimits: highLimits()}, 1)
	movie := "tt0000010"
	for _, p := range []string{"generic", "cinescore", "reelpulse"} {
		s.change(t, p, "upsert", data("x", movie), true)
	}
	eventually(t, "three acked webhooks", func() bool {
		st := s.snd.Stats()
		return st["generic"].Acked == 1 && st["cinescore"].Acked == 1 && st["reelpulse"].Acked == 1
	})
	truth := s.truth(t, movie)
	if len(truth) != 3 {
		t.Fatalf("truth has %d reviews, want 3", len(truth))
	}
	byID := map[string]review.Review{}
	for _, r := range truth {
		byID[r.ID] = r
	}
	for _, d := range s.recv.deliveries() {
		if !d.verified {
			t.Fatalf("%s webhook %s: signature does not verify", d.provider, d.id)
		}
		a, _ := provider.Default().Get(d.provider)
		changes, err := a.Split(d.body)
		if err != nil || len(changes) != 1 {
			t.Fatalf("%s webhook body does not split into one change: %v: %s", d.provider, err, d.body)
		}
		ev, err := a.Normalize(changes[0].Payload, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		want := byID[ev.Review.ID]
		if review.ContentHash(ev.Op, ev.Review) != review.ContentHash(review.OpUpsert, want) {
			t.Errorf("%s: webhook normalizes to %+v, truth %+v", d.provider, ev.Review, want)
		}
		// The poll of the same change is the same bytes.
		latest, _ := s.app.Catalog(d.provider).Latest("x")
		if !bytes.Equal(latest.Event, changes[0].Payload) {
			t.Errorf("%s: webhook event %s, feed event %s", d.provider, changes[0].Payload, latest.Event)
		}
	}
	ids := map[string]int{}
	for _, d := range s.recv.deliveries() {
		ids[d.id]++
	}
	for id, n := range ids {
		if n != 2 {
			t.Errorf("webhook %s attempted %d times, want 2 (one failure, one retry with the same id)", id, n)
		}
	}
	stats := s.stats(t)
	if w := stats["cinescore"].Webhooks; w.Acked != 1 || w.Attempts != 2 || w.Sent != 1 || w.Queued != 0 {
		t.Errorf("cinescore webhook stats %+v", w)
	}
}

func (s *testSim) truth(t *testing.T, movie string) []review.Review {
	t.Helper()
	res, err := http.Get(s.url + "/control/truth?movie_id=" + movie)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tr TruthResponse
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil || res.StatusCode != 200 || tr.MovieID != movie {
		t.Fatalf("truth: %d %v %+v", res.StatusCode, err, tr)
	}
	return tr.Reviews
}

func (s *testSim) stats(t *testing.T) map[string]ProviderStats {
	t.Helper()
	res, err := http.Get(s.url + "/control/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]ProviderStats
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTruthReflectsDeletes(t *testing.T) {
	s := newTestSim(t, Config{}, 0)
	movie := "tt0000020"
	for _, p := range []string{"generic", "cinescore", "reelpulse"} {
		s.change(t, p, "upsert", data("keep", movie), false)
		s.change(t, p, "upsert", data("gone", movie), false)
		s.change(t, p, "upsert", data("gone", movie), false)
		del := s.change(t, p, "delete", provider.GenericData{ReviewID: "gone"}, true)
		if del.Version != 3 {
			t.Fatalf("%s: delete version %d, want 3", p, del.Version)
		}
	}
	truth := s.truth(t, movie)
	var ids []string
	for _, r := range truth {
		ids = append(ids, r.ID)
		if !r.IngestedAt.IsZero() || r.Version != 1 || r.Rating == nil || *r.Rating != 80 {
			t.Errorf("truth review %+v", r)
		}
	}
	if fmt.Sprint(ids) != "[cinescore:keep generic:keep reelpulse:keep]" {
		t.Fatalf("truth ids %v", ids)
	}
	// The deletes were pushed too, as each provider's delete shape.
	eventually(t, "three delete webhooks", func() bool { return len(s.recv.deliveries()) == 3 })
	for _, d := range s.recv.deliveries() {
		a, _ := provider.Default().Get(d.provider)
		changes, err := a.Split(d.body)
		if err != nil {
			t.Fatal(err)
		}
		ev, _ := a.Normalize(changes[0].Payload, time.Time{})
		if ev.Op != review.OpDelete || ev.Review.Version != 3 || ev.Review.MovieID != movie {
			t.Errorf("%s delete webhook normalizes to %+v", d.provider, ev)
		}
	}
	// A newer upsert brings it back; the current-state listing shows it.
	s.change(t, "reelpulse", "upsert", data("gone", movie), false)
	if got := len(s.truth(t, movie)); got != 4 {
		t.Fatalf("truth after resurrection has %d reviews", got)
	}
	res, b := s.get(t, "/providers/reelpulse/v3/titles/"+movie+"/posts?limit=1")
	var p reelpulsePage
	_ = json.Unmarshal(b, &p)
	if res.StatusCode != 200 || len(p.Changes) != 1 || !p.HasMore || p.NextToken == nil {
		t.Fatalf("title listing page 1: %d %s", res.StatusCode, b)
	}
	_, b = s.get(t, "/providers/reelpulse/v3/titles/"+movie+"/posts?limit=1&token="+*p.NextToken)
	_ = json.Unmarshal(b, &p)
	if len(p.Changes) != 1 || p.HasMore || p.NextToken != nil {
		t.Fatalf("title listing page 2: %s", b)
	}
	// A provider filter narrows the truth.
	res2, _ := http.Get(s.url + "/control/truth?movie_id=" + movie + "&provider=generic")
	var tr TruthResponse
	_ = json.NewDecoder(res2.Body).Decode(&tr)
	res2.Body.Close()
	if len(tr.Reviews) != 1 || tr.Reviews[0].ID != "generic:keep" {
		t.Fatalf("truth of generic: %+v", tr.Reviews)
	}
}

func TestMovieListings(t *testing.T) {
	s := newTestSim(t, Config{RateLimits: highLimits()}, 0)
	movie := "tt0000030"
	for _, p := range []string{"generic", "cinescore"} {
		s.change(t, p, "upsert", data("b", movie), false)
		s.change(t, p, "upsert", data("a", movie), false)
		s.change(t, p, "delete", provider.GenericData{ReviewID: "a"}, false)
		s.change(t, p, "upsert", data("c", "tt0000031"), false)
	}
	_, b := s.get(t, "/providers/generic/v1/movies/"+movie+"/reviews")
	var gp genericPage
	_ = json.Unmarshal(b, &gp)
	if len(gp.Events) != 2 || gp.HasMore || !bytes.Contains(gp.Events[0], []byte(`"review.deleted"`)) {
		t.Fatalf("generic movie listing: %s", b)
	}
	_, b = s.get(t, "/providers/cinescore/api/v2/films/"+movie+"/critiques?perPage=1&page=2")
	var cp cinescorePage
	_ = json.Unmarshal(b, &cp)
	if len(cp.Critiques) != 1 || cp.TotalCount != 2 || cp.TotalPages != 2 || cp.NextModifiedSince != nil ||
		!bytes.Contains(cp.Critiques[0], []byte(`"critiqueId":"b"`)) {
		t.Fatalf("cinescore film listing: %s", b)
	}
	// The generic feed's movie filter.
	_, b = s.get(t, "/providers/generic/v1/changes?movie_id=tt0000031")
	_ = json.Unmarshal(b, &gp)
	if len(gp.Events) != 1 {
		t.Fatalf("generic feed of one movie: %s", b)
	}
	for _, path := range []string{"/providers/generic/v1/movies/tt1/reviews", "/providers/cinescore/api/v2/films/x/critiques",
		"/providers/generic/v1/changes?movie_id=nope", "/providers/generic/v1/changes?updated_since=yesterday",
		"/providers/generic/v1/changes?page=0", "/providers/cinescore/api/v2/critiques?modifiedSince=-1",
		"/providers/cinescore/api/v2/critiques?perPage=x", "/providers/reelpulse/v3/changes?token=%21%21",
		"/providers/reelpulse/v3/changes?start=2026-11-20T10:00:00Z", "/providers/reelpulse/v3/changes?limit=0"} {
		if res, b := s.get(t, path); res.StatusCode != 400 || !bytes.Contains(b, []byte(`"error"`)) {
			t.Errorf("%s: %d %s, want 400 with an error", path, res.StatusCode, b)
		}
	}
	if res, b := s.get(t, "/providers/nosuch/v1/changes"); res.StatusCode != 404 || !bytes.Contains(b, []byte(`"error"`)) {
		t.Errorf("unknown path: %d %s", res.StatusCode, b)
	}
}

func TestReelpulseTokens(t *testing.T) {
	s := newTestSim(t, Config{RateLimits: highLimits()}, 0)
	for i := range 4 {
		s.change(t, "reelpulse", "upsert", data(fmt.Sprint("p", i), "tt0000040"), false)
	}
	_, b := s.get(t, "/providers/reelpulse/v3/changes?limit=10")
	var p reelpulsePage
	_ = json.Unmarshal(b, &p)
	if len(p.Changes) != 4 || p.HasMore || p.NextToken == nil {
		t.Fatalf("first read: %s", b)
	}
	// An empty read keeps the position.
	_, b = s.get(t, "/providers/reelpulse/v3/changes?token="+*p.NextToken)
	var q reelpulsePage
	_ = json.Unmarshal(b, &q)
	if len(q.Changes) != 0 || *q.NextToken != *p.NextToken {
		t.Fatalf("empty read: %s", b)
	}
	// start= begins at a time (reelpulse times are seconds; all four are now).
	_, b = s.get(t, "/providers/reelpulse/v3/changes?start="+url.QueryEscape(time.Now().UTC().Add(-time.Minute).Format(provider.ReelpulseTimeLayout)))
	_ = json.Unmarshal(b, &q)
	if len(q.Changes) != 4 {
		t.Fatalf("start a minute ago: %s", b)
	}
	_, b = s.get(t, "/providers/reelpulse/v3/changes?start="+url.QueryEscape(time.Now().UTC().Add(time.Minute).Format(provider.ReelpulseTimeLayout)))
	_ = json.Unmarshal(b, &q)
	if len(q.Changes) != 0 {
		t.Fatalf("start in a minute: %s", b)
	}
	// A token of an earlier simulator run: 410, start over.
	other := newTestSim(t, Config{RateLimits: highLimits()}, 0)
	if res, b := other.get(t, "/providers/reelpulse/v3/changes?token="+*p.NextToken); res.StatusCode != http.StatusGone {
		t.Fatalf("foreign token: %d %s, want 410", res.StatusCode, b)
	}
}

func TestRateLimit(t *testing.T) {
	s := newTestSim(t, Config{RateLimits: map[string]float64{"cinescore": 3}}, 0)
	for i := range 3 {
		res, b := s.get(t, "/providers/cinescore/api/v2/critiques")
		if res.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, res.StatusCode, b)
		}
		if res.Header.Get("X-RateLimit-Limit") != "3" || res.Header.Get("X-RateLimit-Remaining") != strconv.Itoa(2-i) {
			t.Fatalf("request %d headers %v", i, res.Header)
		}
	}
	res, b := s.get(t, "/providers/cinescore/api/v2/critiques")
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "1" ||
		res.Header.Get("X-RateLimit-Remaining") != "0" || res.Header.Get("X-RateLimit-Reset") != "1" ||
		!bytes.Contains(b, []byte(`"error":"rate limit of 3 requests per second exceeded"`)) {
		t.Fatalf("over the limit: %d %v %s", res.StatusCode, res.Header, b)
	}
	// Other providers have their own buckets.
	if res, _ := s.get(t, "/providers/reelpulse/v3/changes"); res.StatusCode != 200 {
		t.Fatalf("reelpulse: %d", res.StatusCode)
	}
	st := s.stats(t)["cinescore"]
	if st.Requests != 4 || st.RateLimited != 1 || st.MaxPerSecond < 2 || st.RateLimitPerS != 3 {
		t.Fatalf("stats %+v", st)
	}
	var sum int64
	for _, sec := range st.PerSecond {
		sum += sec.Requests
	}
	if sum != 4 {
		t.Fatalf("per-second counts add up to %d, want 4", sum)
	}
}

func TestAuth(t *testing.T) {
	s := newTestSim(t, Config{}, 0)
	for _, h := range []string{"", "Bearer wrong", "Basic " + apiKey, apiKey} {
		req, _ := http.NewRequest(http.MethodGet, s.url+"/providers/generic/v1/changes", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", h, res.StatusCode)
		}
	}
	res, err := http.Post(s.url+"/providers/generic/v1/changes", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST to the feed: %d", res.StatusCode)
	}
}

func TestFaultsApplyAndReset(t *testing.T) {
	s := newTestSim(t, Config{}, 0)
	feed := "/providers/generic/v1/changes"
	setFaults := func(body string) {
		t.Helper()
		if code, b := s.post(t, "/control/faults", body); code != 200 {
			t.Fatalf("faults %s: %d %s", body, code, b)
		}
	}

	setFaults(`{"provider":"generic","down":true}`)
	res, b := s.get(t, feed)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !bytes.Contains(b, []byte(`"error"`)) {
		t.Fatalf("down: %d %s", res.StatusCode, b)
	}
	if res, _ := s.get(t, "/providers/cinescore/api/v2/critiques"); res.StatusCode != 200 {
		t.Fatalf("faults leak to cinescore: %d", res.StatusCode)
	}

	setFaults(`{"provider":"generic","error_rate":1}`)
	if res, _ := s.get(t, feed); res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("error_rate 1: %d", res.StatusCode)
	}

	setFaults(`{"provider":"generic","latency_ms":150}`)
	t0 := time.Now()
	if res, _ := s.get(t, feed); res.StatusCode != 200 || time.Since(t0) < 150*time.Millisecond {
		t.Fatalf("latency: %d after %v", res.StatusCode, time.Since(t0))
	}

	setFaults(`{"provider":"generic","rate_limit_per_s":1}`)
	if res, _ := s.get(t, feed); res.StatusCode != 200 || res.Header.Get("X-RateLimit-Limit") != "1" {
		t.Fatalf("first under rate 1: %d %v", res.StatusCode, res.Header)
	}
	if res, _ := s.get(t, feed); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second under rate 1: %d", res.StatusCode)
	}

	res2, _ := http.Get(s.url + "/control/faults")
	var all map[string]Faults
	_ = json.NewDecoder(res2.Body).Decode(&all)
	res2.Body.Close()
	if all["generic"] != (Faults{RateLimitPerS: 1}) || all["reelpulse"] != (Faults{}) {
		t.Fatalf("GET faults %+v", all)
	}

	setFaults(`{"provider":"generic"}`) // {} values reset
	for i := range 10 {
		res, _ := s.get(t, feed)
		if res.StatusCode != 200 || res.Header.Get("X-RateLimit-Limit") != "20" {
			t.Fatalf("after reset, request %d: %d %v", i, res.StatusCode, res.Header)
		}
	}
	st := s.stats(t)["generic"]
	if st.Unavailable != 1 || st.ErrorsInjected != 1 || st.RateLimited != 1 || st.Requests != 15 {
		t.Fatalf("stats %+v", st)
	}

	for _, bad := range []string{`{"provider":"generic","error_rate":2}`, `{"provider":"generic","latency_ms":-1}`,
		`{"provider":"generic","rate_limit_per_s":-3}`, `{"provider":"nosuch"}`, `{"provider":"generic","downn":true}`, `not json`} {
		if code, b := s.post(t, "/control/faults", bad); code != 400 || !bytes.Contains(b, []byte(`"error"`)) {
			t.Errorf("%s: %d %s, want 400", bad, code, b)
		}
	}
}

func TestControlReviewErrors(t *testing.T) {
	s := newTestSim(t, Config{}, 0)
	s.change(t, "generic", "upsert", provider.GenericData{ReviewID: "v", Version: 5, Movie: &provider.GenericMovie{ImdbID: "tt0000050"}}, false)
	cases := []struct {
		body string
		code int
	}{
		{`{"provider":"generic","op":"upsert","review":{"review_id":"v","version":5,"movie":{"imdb_id":"tt0000050"}}}`, 409},
		{`{"provider":"generic","op":"upsert","review":{"review_id":"v","version":4,"movie":{"imdb_id":"tt0000050"}}}`, 409},
		{`{"provider":"generic","op":"delete","review":{"review_id":"v","version":5}}`, 409},
		{`{"provider":"generic","op":"delete","review":{"review_id":"nope"}}`, 404},
		{`{"provider":"nosuch","op":"upsert","review":{"review_id":"v"}}`, 400},
		{`{"provider":"generic","op":"upsert"}`, 400},
		{`{"provider":"generic","op":"merge","review":{"review_id":"w","movie":{"imdb_id":"tt0000050"}}}`, 400},
		{`{"provider":"generic","op":"upsert","review":{"review_id":"w"}}`, 400},
		{`{"provider":"generic","op":"upsert","review":{"review_id":"w","movie":{"imdb_id":"tt1"}}}`, 400},
		{`{"provider":"generic","op":"upsert","review":{"review_id":"w","movie":{"imdb_id":"tt0000050"},"url":"ftp://x"}}`, 400},
		{`{"provider":"generic","op":"upsert","review":{"review_id":"w","movie":{"imdb_id":"tt0000050"},"ratin":{}}}`, 400},
		{`{"provider":"cinescore","op":"upsert","review":{"review_id":"w","updated_at":"1960-01-01T00:00:00Z","movie":{"imdb_id":"tt0000050"}}}`, 400},
		{`{"provider":"generic"`, 400},
	}
	for _, tc := range cases {
		code, b := s.post(t, "/control/reviews", tc.body)
		if code != tc.code || !bytes.Contains(b, []byte(`"error"`)) {
			t.Errorf("%s: %d %s, want %d with an error", tc.body, code, b, tc.code)
		}
	}
	if got := s.app.Catalog("generic").Len(); got != 1 {
		t.Fatalf("refused changes left %d entries", got)
	}
	res, _ := http.Get(s.url + "/control/reviews")
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /control/reviews: %d", res.StatusCode)
	}
	for _, q := range []string{"", "?movie_id=x", "?movie_id=tt0000050&provider=nosuch"} {
		res, _ := http.Get(s.url + "/control/truth" + q)
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Errorf("truth%s: %d", q, res.StatusCode)
		}
	}
}

func TestWebhookNeedsASecret(t *testing.T) {
	recv := httptest.NewServer(http.NotFoundHandler())
	defer recv.Close()
	snd, _ := webhooks.New(webhooks.Config{ReceiverURL: recv.URL, Keys: map[string][]byte{"generic": []byte("k")}}, zap.NewNop(), prometheus.NewRegistry())
	a, err := New(Config{APIKey: "k"}, snd, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	res, err := http.Post(srv.URL+"/control/reviews", "application/json", bytes.NewBufferString(
		`{"provider":"reelpulse","op":"upsert","webhook":true,"review":{"review_id":"a","movie":{"imdb_id":"tt0000060"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 400 || !bytes.Contains(b, []byte("WEBHOOK_SECRET_REELPULSE")) || a.Catalog("reelpulse").Len() != 0 {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
}

func TestTrickle(t *testing.T) {
	s := newTestSim(t, Config{Seed: 3, TricklePerS: 200, RateLimits: highLimits()}, 0)
	total := func() int64 {
		var n int64
		for _, p := range []string{"generic", "cinescore", "reelpulse"} {
			n += s.app.Catalog(p).Len()
		}
		return n
	}
	eventually(t, "60 generated changes", func() bool { return total() >= 60 })
	eventually(t, "some generated webhooks acked", func() bool {
		var acked int64
		for _, st := range s.snd.Stats() {
			acked += st.Acked
		}
		return acked >= 10
	})
	for _, d := range s.recv.deliveries() {
		if !d.verified {
			t.Fatalf("unsigned generated webhook %s", d.id)
		}
	}
	var sent int64
	for _, st := range s.snd.Stats() {
		sent += st.Acked + st.Failed + int64(st.Queued) // each delivery is in one of these
	}
	if n := total(); sent <= 0 || sent >= n {
		t.Fatalf("%d webhooks for %d changes: want about half poll-only", sent, n)
	}
}
