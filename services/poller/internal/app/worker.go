package app

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/feed"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/fetch"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/store"
)

// worker syncs one provider: it schedules between its streams (live sync,
// then a refresh, then a backfill; see choose), one request at a time, when
// its fetcher allows. Its fetcher (budget, breaker, backoff) lives as long
// as the process, so a lost and retaken lease does not reset it; the
// streams are reloaded from PostgreSQL when a lease term starts. serve runs
// on one goroutine at a time.
type worker struct {
	s       *Service
	name    string
	feed    feed.Feed
	log     *zap.Logger
	fetcher *fetch.Fetcher
	pub     *publisher
	// wake is signalled when a job for this provider was queued here.
	wake chan struct{}

	// pageSize is the page size asked for: halved by live sync after an
	// answer too large, back to Config.PageSize when a pass completes.
	pageSize int
	live     *liveStream
	refresh  *refreshStream  // nil when no refresh is being served
	backfill *backfillStream // nil when no backfill runs
	// nextQueueCheck is when to look for queued jobs again.
	nextQueueCheck time.Time
	health         healthState
	term           *term
}

func (s *Service) newWorker(pc ProviderConfig, f feed.Feed, a provider.Adapter) *worker {
	w := &worker{
		s: s, name: pc.Name, feed: f,
		log:      s.log.With(zap.String("provider", pc.Name)),
		wake:     make(chan struct{}, 1),
		pageSize: s.cfg.PageSize,
	}
	w.pub = &publisher{provider: pc.Name, adapter: a, raw: s.raw, dlq: s.dlq, deadline: s.cfg.KafkaDeadline,
		m: s.m, log: w.log, recent: newRecentSet(20_000)}
	w.live = &liveStream{w: w}
	w.fetcher = fetch.New(fetch.Config{
		Name: pc.Name,
		Rate: pc.Rate,
		// 5% below the provider's published limit, so arrival jitter cannot
		// put one request too many in the provider's second.
		Headroom:    0.05,
		BackoffBase: s.cfg.BackoffBase, BackoffMax: s.cfg.BackoffMax,
		BreakerFailures: s.cfg.BreakerFailures, BreakerTimeout: s.cfg.BreakerTimeout,
		OnBreakerChange: func(from, to gobreaker.State) {
			s.m.breakerState.WithLabelValues(pc.Name).Set(float64(to))
			s.m.breakerChanges.WithLabelValues(pc.Name, to.String()).Inc()
			w.log.Warn("circuit breaker changed state", zap.String("from", from.String()), zap.String("to", to.String()))
		},
	})
	s.m.breakerState.WithLabelValues(pc.Name).Set(0)
	s.m.leaseHeld.WithLabelValues(pc.Name).Set(0)
	return w
}

// serve syncs the provider for one lease term, until ctx ends (the term
// ended or the poller stops). It returns nil then, an error when the term
// could not start, or an errAbort from a hook.
func (w *worker) serve(ctx context.Context, t *term) error {
	cursor, err := w.s.st.Cursor(ctx, w.name, string(StreamLive))
	if err != nil {
		return err
	}
	w.term = t
	w.live = &liveStream{w: w, cursor: cursor, due: time.Now()}
	w.refresh, w.backfill, w.nextQueueCheck = nil, nil, time.Time{}
	w.pageSize = w.s.cfg.PageSize
	if h, ok, err := w.s.st.LoadHealth(ctx, w.name); err == nil && ok {
		w.health.lastSuccess = h.LastSuccessAt
	}
	w.health.saved, w.health.savedAt = store.Health{}, time.Time{}
	w.log.Info("live sync starts", zap.String("cursor", cursor))
	for ctx.Err() == nil {
		now := time.Now()
		w.gauges(now)
		if err := w.checkQueues(ctx, now); err != nil {
			if errors.Is(err, store.ErrLeaseLost) || ctx.Err() != nil {
				return nil
			}
			w.log.Warn("could not read queued jobs", zap.Error(err))
		}
		w.saveHealth(ctx, now)
		s := w.pick(now)
		if s == nil {
			w.idle(ctx, min(w.live.due.Sub(now), w.nextQueueCheck.Sub(now)))
			continue
		}
		if d := w.fetcher.Delay(now); d > 0 {
			// Wait for budget, then choose again: a higher priority may
			// be pending by then. Wake up at least every QueueCheck to
			// keep health and gauges current.
			w.idle(ctx, min(d, w.s.cfg.QueueCheck))
			continue
		}
		err := w.step(ctx, s)
		if s.done() {
			w.drop(s)
		}
		switch {
		case isAbort(err):
			return err
		case errors.Is(err, store.ErrLeaseLost):
			return nil
		case err != nil && ctx.Err() == nil:
			now := time.Now()
			w.failed(now, err, nil, w.fetcher.BackOff(now))
		}
		w.saveHealth(ctx, time.Now())
	}
	return nil
}

// pick returns the stream that sends the next request (choose), nil when
// none has anything to send at now.
func (w *worker) pick(now time.Time) stream {
	switch choose(pending{live: w.live.ready(now), refresh: w.refresh != nil, backfill: w.backfill != nil}) {
	case StreamLive:
		return w.live
	case StreamRefresh:
		return w.refresh
	case StreamBackfill:
		return w.backfill
	}
	return nil
}

// drop forgets a finished job's stream and looks for the next job at once.
func (w *worker) drop(s stream) {
	switch s.kind() {
	case StreamRefresh:
		w.refresh = nil
	case StreamBackfill:
		w.backfill = nil
	}
	w.nextQueueCheck = time.Time{}
}

// leaseEnded clears what this replica shows about a provider it no longer polls.
func (w *worker) leaseEnded() {
	w.term = nil
	for _, g := range []interface{ DeleteLabelValues(...string) bool }{
		w.s.m.cursorLag, w.s.m.cursorTime, w.s.m.backfillCursor, w.s.m.refreshQueued,
	} {
		g.DeleteLabelValues(w.name)
	}
	w.s.m.backfillJobs.DeleteLabelValues(w.name, store.StatusQueued)
	w.s.m.backfillJobs.DeleteLabelValues(w.name, store.StatusRunning)
}

// idle waits d (at least a millisecond), until ctx ends, or until a job is
// queued for this provider.
func (w *worker) idle(ctx context.Context, d time.Duration) {
	d = max(d, time.Millisecond)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-w.wake:
		w.nextQueueCheck = time.Time{}
	case <-t.C:
	}
}

// request sends one request of stream k through the fetcher, bounded by the
// lease term, and records what the answer says of the provider: metrics,
// and health (a failure is logged). The stream decides what the result
// means for it.
func (w *worker) request(ctx context.Context, k Stream, call func(context.Context) (feed.Page, error)) fetch.Result {
	res := w.fetcher.Fetch(ctx, w.term.validUntil(), call)
	if res.Abandoned {
		return res
	}
	w.s.m.requests.WithLabelValues(w.name, string(k), res.Outcome.String()).Inc()
	if res.Page.Answer.Elapsed > 0 {
		w.s.m.requestSeconds.WithLabelValues(w.name).Observe(res.Page.Answer.Elapsed.Seconds())
	}
	w.health.lastAttempt = res.Done
	switch {
	case res.Outcome == feed.RateLimited:
		w.health.lastError = errText(res.Err)
	case res.Failed():
		w.failed(res.Done, res.Err, &res.Outcome, res.Backoff)
	}
	return res
}

// failed records a failed step in health and the log. o is the failed
// request's outcome, nil when a later part of the step failed (Kafka,
// PostgreSQL); b is the backoff the fetcher applied.
func (w *worker) failed(now time.Time, err error, o *feed.Outcome, b fetch.Backoff) {
	outcome := ""
	if o != nil {
		outcome = o.String()
	}
	w.health.failed(now, err, o != nil && *o == feed.Unavailable)
	lvl := w.log.Info
	if b.InARow == 1 || b.InARow%10 == 0 {
		lvl = w.log.Warn
	}
	lvl("provider sync step failed; backing off", zap.String("outcome", outcome), zap.Int("failures_in_a_row", b.InARow),
		zap.Duration("backoff", b.Wait), zap.Error(err))
}

// succeeded records a page fetched, published and recorded.
func (w *worker) succeeded(now time.Time) {
	w.health.succeeded(now)
	w.s.m.lastSuccess.WithLabelValues(w.name).Set(float64(now.UnixNano()) / 1e9)
}

// checkQueues looks for queued refresh and backfill jobs when it is time to.
func (w *worker) checkQueues(ctx context.Context, now time.Time) error {
	if now.Before(w.nextQueueCheck) {
		return nil
	}
	w.nextQueueCheck = now.Add(w.s.cfg.QueueCheck)
	if w.refresh == nil {
		r, err := w.s.st.NextRefresh(ctx, w.name)
		if err != nil {
			return err
		}
		if r != nil {
			w.refresh = &refreshStream{w: w, job: r}
		}
	}
	if w.backfill == nil {
		b, err := w.s.st.NextBackfill(ctx, w.name)
		if err != nil {
			return err
		}
		if b != nil {
			w.backfill = &backfillStream{w: w, job: b}
		}
	}
	c, err := w.s.st.CountJobs(ctx, w.name)
	if err != nil {
		return err
	}
	w.s.m.backfillJobs.WithLabelValues(w.name, store.StatusQueued).Set(float64(c.BackfillQueued))
	w.s.m.backfillJobs.WithLabelValues(w.name, store.StatusRunning).Set(float64(c.BackfillRunning))
	w.s.m.refreshQueued.WithLabelValues(w.name).Set(float64(c.RefreshQueued))
	return nil
}

// gauges refreshes the gauges that move with time.
func (w *worker) gauges(now time.Time) {
	s := w.fetcher.Budget(now)
	w.s.m.budgetTokens.WithLabelValues(w.name).Set(s.Tokens)
	w.s.m.rateLimit.WithLabelValues(w.name).Set(s.Rate)
	if s.Remaining >= 0 {
		w.s.m.budgetRemaining.WithLabelValues(w.name).Set(float64(s.Remaining))
	}
	switch {
	case !w.live.caughtUp.IsZero():
		w.s.m.cursorLag.WithLabelValues(w.name).Set(now.Sub(w.live.caughtUp).Seconds())
	default:
		if t, ok := w.feed.CursorTime(w.live.cursor); ok {
			w.s.m.cursorLag.WithLabelValues(w.name).Set(now.Sub(t).Seconds())
		}
	}
}
