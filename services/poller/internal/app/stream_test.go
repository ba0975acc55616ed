package app

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/services/poller/internal/feed"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/store"
)

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		kind     Stream
		o        feed.Outcome
		size     int
		stopping bool
		want     recovery
	}{
		{StreamLive, feed.Gone, 100, false, forgetCursor},
		{StreamLive, feed.TooLarge, 100, false, smallerPages},
		{StreamLive, feed.TooLarge, 1, false, smallerPages},
		{StreamLive, feed.ClientError, 100, false, restart},
		{StreamLive, feed.Redirect, 100, false, restart},
		{StreamLive, feed.ServerError, 100, false, retry},
		{StreamLive, feed.RateLimited, 100, false, retry},
		{StreamLive, feed.BreakerOpen, 100, false, retry},
		{StreamLive, feed.Canceled, 100, true, retry},
		{StreamRefresh, feed.ServerError, 100, false, retry},
		{StreamRefresh, feed.Timeout, 100, false, retry},
		{StreamRefresh, feed.BreakerOpen, 100, false, retry},
		{StreamRefresh, feed.Canceled, 100, true, retry},
		{StreamRefresh, feed.ClientError, 100, true, retry},
		{StreamRefresh, feed.TooLarge, 100, false, smallerPages},
		{StreamRefresh, feed.TooLarge, 1, false, giveUp},
		{StreamRefresh, feed.Gone, 100, false, giveUp},
		{StreamRefresh, feed.ClientError, 100, false, giveUp},
		{StreamBackfill, feed.Unavailable, 100, false, retry},
		{StreamBackfill, feed.BreakerOpen, 100, false, retry},
		{StreamBackfill, feed.TooLarge, 2, false, smallerPages},
		{StreamBackfill, feed.Redirect, 100, false, giveUp},
		{StreamBackfill, feed.Canceled, 100, false, giveUp},
	} {
		if got := judge(tc.kind, tc.o, tc.size, tc.stopping); got != tc.want {
			t.Errorf("judge(%s, %s, size %d, stopping %v) = %s, want %s", tc.kind, tc.o, tc.size, tc.stopping, got, tc.want)
		}
	}
}

// stubFeed answers every request with err and counts the requests.
type stubFeed struct {
	err   error
	calls int
}

func (f *stubFeed) Name() string { return "generic" }
func (f *stubFeed) Changes(context.Context, feed.Query) (feed.Page, error) {
	f.calls++
	return feed.Page{}, f.err
}
func (f *stubFeed) Movie(context.Context, string, feed.Query) (feed.Page, error) {
	f.calls++
	return feed.Page{}, f.err
}
func (f *stubFeed) Rewind(c string, _ time.Duration) string { return c }
func (f *stubFeed) Later(saved, next string) string         { return max(saved, next) }
func (f *stubFeed) CursorTime(string) (time.Time, bool)     { return time.Time{}, false }
func (f *stubFeed) DefaultPageSize() int                    { return 100 }

// newTestWorker returns a worker of a service with no Kafka and no
// PostgreSQL, in a lease term of a minute: enough for steps that end at the
// request. Its budget never holds a request back; one provider fault opens
// its breaker for a minute.
func newTestWorker(t *testing.T, f feed.Feed) (*worker, *prometheus.Registry) {
	t.Helper()
	cfg := Config{Holder: "test", BreakerFailures: 1, BreakerTimeout: time.Minute,
		Providers: []ProviderConfig{{Name: "generic", BaseURL: "http://127.0.0.1:1", APIKey: "k", Rate: 20}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := &Service{cfg: cfg, log: zap.NewNop(), m: newMetrics(reg), workers: map[string]*worker{}}
	pc := cfg.Providers[0]
	pc.Rate = 1e6
	w := s.newWorker(pc, f, nil)
	now := time.Now()
	w.term = &term{until: now.Add(time.Minute), start: now}
	return w, reg
}

// The breaker's refusal comes back from the fetcher as gobreaker's own
// error, classified breaker_open, and every stream waits and retries: no
// job fails, no cursor moves, no request reaches the provider, and it is
// counted under its own outcome.
func TestBreakerOpenIsRetriedByEveryStream(t *testing.T) {
	f := &stubFeed{err: &feed.StatusError{Status: 500}}
	w, reg := newTestWorker(t, f)
	ctx := context.Background()
	w.live = &liveStream{w: w, cursor: "c1", walking: true, query: feed.Query{From: "c1", Page: 3, Size: 100}}
	w.refresh = &refreshStream{w: w, job: &store.Refresh{MovieID: "tt0000001"}, started: time.Now(), query: feed.Query{Page: 2, Size: 100}}
	w.backfill = &backfillStream{w: w, job: &store.Backfill{Cursor: "b1"}, started: true, query: feed.Query{From: "b1", Page: 4, Size: 100}}

	// A provider fault opens the breaker (BreakerFailures 1); the refresh
	// retries it.
	if err := w.step(ctx, w.refresh); err != nil {
		t.Fatal(err)
	}
	if w.fetcher.BreakerState() != gobreaker.StateOpen || f.calls != 1 || w.refresh.done() {
		t.Fatalf("after a 500: breaker %s, calls %d, refresh done %v", w.fetcher.BreakerState(), f.calls, w.refresh.done())
	}
	for _, s := range []stream{w.live, w.refresh, w.backfill} {
		waitForToken(t, w)
		if err := w.step(ctx, s); err != nil {
			t.Fatalf("%s: step with the breaker open: %v", s.kind(), err)
		}
		if got := sumCounter(t, reg, "reviewpipe_poller_requests_total",
			map[string]string{"stream": string(s.kind()), "outcome": "breaker_open"}); got != 1 {
			t.Errorf("%s: %v requests counted breaker_open, want 1", s.kind(), got)
		}
	}
	if f.calls != 1 {
		t.Fatalf("%d requests reached the provider through an open breaker", f.calls-1)
	}
	if w.refresh.done() || w.refresh.query.Page != 2 || w.backfill.done() || w.backfill.query.Page != 4 {
		t.Fatalf("a job moved: refresh %+v, backfill %+v", w.refresh, w.backfill)
	}
	if !w.live.walking || w.live.cursor != "c1" || w.live.query.Page != 3 {
		t.Fatalf("live sync moved: %+v", w.live)
	}
	if got := sumCounter(t, reg, "reviewpipe_poller_requests_total", map[string]string{"outcome": "server_error"}); got != 1 {
		t.Fatalf("server_error counted %v times, want 1", got)
	}
}

// waitForToken waits for the worker's budget to hold a token (a
// microsecond at the test's rate); the breaker and backoff may hold
// requests back, but the step is called directly, as the fetcher allows.
func waitForToken(t *testing.T, w *worker) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for w.fetcher.Budget(time.Now()).Tokens < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no token within a second")
		}
	}
}

func TestPickFollowsPriorities(t *testing.T) {
	now := time.Now()
	w, _ := newTestWorker(t, &stubFeed{})
	refresh := &refreshStream{w: w}
	backfill := &backfillStream{w: w}
	for _, tc := range []struct {
		name     string
		live     liveStream
		refresh  *refreshStream
		backfill *backfillStream
		want     Stream
	}{
		{"nothing due", liveStream{due: now.Add(time.Second)}, nil, nil, ""},
		{"live pass due", liveStream{due: now}, refresh, backfill, StreamLive},
		{"live pass under way", liveStream{walking: true, due: now.Add(time.Hour)}, refresh, backfill, StreamLive},
		{"refresh before backfill", liveStream{due: now.Add(time.Second)}, refresh, backfill, StreamRefresh},
		{"backfill when nothing else", liveStream{due: now.Add(time.Second)}, nil, backfill, StreamBackfill},
	} {
		live := tc.live
		w.live, w.refresh, w.backfill = &live, tc.refresh, tc.backfill
		got := w.pick(now)
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("%s: picked %s, want none", tc.name, got.kind())
		case tc.want != "" && (got == nil || got.kind() != tc.want):
			t.Errorf("%s: picked %v, want %s", tc.name, got, tc.want)
		}
	}
}
