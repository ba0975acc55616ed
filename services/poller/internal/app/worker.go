package app

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/retry"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/budget"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/feed"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/store"
)

// worker syncs one provider. Its bucket, breaker and backoff live as long as
// the process (a lost and retaken lease does not reset them); everything
// else is reloaded from PostgreSQL when a lease term starts. serve runs on
// one goroutine at a time, which sends one request at a time.
type worker struct {
	s       *Service
	name    string
	feed    feed.Feed
	adapter provider.Adapter
	bucket  *budget.Bucket
	breaker *gobreaker.CircuitBreaker[feed.Page]
	log     *zap.Logger
	// wake is signalled when a job for this provider was queued here.
	wake chan struct{}
	// recent holds digests of events the live stream published lately, so
	// the overlap of a rewound pass is not published twice by this process.
	recent *recentSet

	// Backoff after failures: failures in a row, and no request before notBefore.
	failures  int
	notBefore time.Time
	openedAt  time.Time // when the breaker last opened

	pageSize int
	live     liveState
	refresh  *refreshState
	backfill *backfillState
	// nextQueueCheck is when to look for queued jobs again.
	nextQueueCheck time.Time
	health         healthState
	term           *term
}

type liveState struct {
	cursor  string     // saved cursor
	walking bool       // a pass is under way
	query   feed.Query // the next page of the pass
	due     time.Time  // when the next pass starts
	// caughtUp is when the last page that reached the feed's end was
	// asked for: every change recorded before it has been read.
	caughtUp time.Time
}

type refreshState struct {
	job     *store.Refresh
	started time.Time // database time StartRefresh returned; zero before
	query   feed.Query
	pages   int
	events  int
}

type backfillState struct {
	job     *store.Backfill
	query   feed.Query
	started bool
}

type healthState struct {
	lastSuccess time.Time
	lastAttempt time.Time
	lastError   string
	failing     bool
	unavailable bool // the latest failure was a 503
	saved       store.Health
	savedAt     time.Time
}

func (s *Service) newWorker(pc ProviderConfig, f feed.Feed, a provider.Adapter) *worker {
	w := &worker{
		s: s, name: pc.Name, feed: f, adapter: a,
		bucket:   budget.New(pc.Rate, 1, time.Now()),
		log:      s.log.With(zap.String("provider", pc.Name)),
		wake:     make(chan struct{}, 1),
		recent:   newRecentSet(20_000),
		pageSize: s.cfg.PageSize,
	}
	// 5% below the provider's published limit, so arrival jitter cannot
	// put one request too many in the provider's second.
	w.bucket.SetHeadroom(0.05)
	w.breaker = gobreaker.NewCircuitBreaker[feed.Page](gobreaker.Settings{
		Name:        pc.Name,
		MaxRequests: 1,
		Timeout:     s.cfg.BreakerTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(s.cfg.BreakerFailures) },
		IsExcluded: func(err error) bool {
			// Only the provider's own faults count; our rate, refused
			// requests and requests cut short by a lease's end do not.
			var ab abandoned
			return err != nil && (errors.As(err, &ab) || !feed.Classify(err).ProviderFault())
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				w.openedAt = time.Now()
			}
			s.m.breakerState.WithLabelValues(pc.Name).Set(float64(to))
			s.m.breakerChanges.WithLabelValues(pc.Name, to.String()).Inc()
			w.log.Warn("circuit breaker changed state", zap.String("from", from.String()), zap.String("to", to.String()))
		},
	})
	s.m.breakerState.WithLabelValues(pc.Name).Set(0)
	s.m.leaseHeld.WithLabelValues(pc.Name).Set(0)
	return w
}

// abandoned is a request cut short because the lease term ended or the
// poller is stopping: not the provider's fault.
type abandoned struct{ err error }

func (a abandoned) Error() string { return a.err.Error() }
func (a abandoned) Unwrap() error { return a.err }

// serve syncs the provider for one lease term, until ctx ends (the term
// ended or the poller stops). It returns nil then, an error when the term
// could not start, or an errAbort from a hook.
func (w *worker) serve(ctx context.Context, t *term) error {
	cursor, err := w.s.st.Cursor(ctx, w.name, string(StreamLive))
	if err != nil {
		return err
	}
	w.term = t
	w.live = liveState{cursor: cursor, due: time.Now()}
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
		w.saveHealth(ctx, now, false)
		work := choose(pending{
			live:     w.live.walking || !now.Before(w.live.due),
			refresh:  w.refresh != nil,
			backfill: w.backfill != nil,
		})
		if work == "" {
			w.idle(ctx, min(w.live.due.Sub(now), w.nextQueueCheck.Sub(now)))
			continue
		}
		if d := w.sendDelay(now); d > 0 {
			// Wait for budget, then choose again: a higher priority may
			// be pending by then. Wake up at least every QueueCheck to
			// keep health and gauges current.
			w.idle(ctx, min(d, w.s.cfg.QueueCheck))
			continue
		}
		switch work {
		case StreamLive:
			err = w.stepLive(ctx)
		case StreamRefresh:
			err = w.stepRefresh(ctx)
		case StreamBackfill:
			err = w.stepBackfill(ctx)
		}
		switch {
		case isAbort(err):
			return err
		case errors.Is(err, store.ErrLeaseLost):
			return nil
		case err != nil && ctx.Err() == nil:
			w.failed(time.Now(), err, "")
		}
		w.saveHealth(ctx, time.Now(), false)
	}
	return nil
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

// sendDelay is how long until the next request may go: the budget, the
// backoff after failures, and an open breaker all hold it back.
func (w *worker) sendDelay(now time.Time) time.Duration {
	d := w.bucket.Delay(now)
	if b := w.notBefore.Sub(now); b > d {
		d = b
	}
	if w.breaker.State() == gobreaker.StateOpen {
		if b := w.openedAt.Add(w.s.cfg.BreakerTimeout).Sub(now); b > d {
			d = b
		}
		d = max(d, 10*time.Millisecond)
	}
	return d
}

// fetch spends a token and sends one request through the breaker, bounded by
// the lease term, then brings the budget, backoff, metrics and health in
// step with the answer. The returned error is the request's.
func (w *worker) fetch(ctx context.Context, stream Stream, call func(context.Context) (feed.Page, error)) (feed.Page, time.Time, error) {
	start := time.Now()
	if !w.bucket.Take(start) {
		return feed.Page{}, start, errors.New("no budget (internal: fetch without a token)")
	}
	rctx, cancel := context.WithDeadline(ctx, w.term.validUntil())
	defer cancel()
	page, err := w.breaker.Execute(func() (feed.Page, error) {
		p, err := call(rctx)
		if err != nil && (rctx.Err() != nil || ctx.Err() != nil) {
			err = abandoned{err}
		}
		return p, err
	})
	now := time.Now()
	w.bucket.Observe(now, page.Answer.Budget)
	outcome := feed.Classify(err).String()
	var ab abandoned
	switch {
	case errors.As(err, &ab):
		return page, start, err
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		outcome = "breaker_open"
	}
	w.s.m.requests.WithLabelValues(w.name, string(stream), outcome).Inc()
	if page.Answer.Elapsed > 0 {
		w.s.m.requestSeconds.WithLabelValues(w.name).Observe(page.Answer.Elapsed.Seconds())
	}
	w.health.lastAttempt = now
	h := page.Answer.Budget
	switch outcome {
	case "ok":
		w.failures, w.notBefore = 0, time.Time{}
	case "breaker_open":
		// sendDelay waits for the breaker's timeout.
	case "rate_limited":
		// The provider says when: obey it; without Retry-After back off.
		if h.RetryAfter != nil {
			w.bucket.Pause(now, max(*h.RetryAfter, 100*time.Millisecond))
		} else {
			w.bucket.Pause(now, retry.Backoff(w.failures, w.s.cfg.BackoffBase, w.s.cfg.BackoffMax))
			w.failures++
		}
		w.health.lastError = errText(err)
	default:
		w.failed(now, err, outcome)
		if h.RetryAfter != nil {
			w.bucket.Pause(now, *h.RetryAfter)
		}
	}
	return page, start, err
}

// failed records a failed step: backoff with full jitter, health, log.
func (w *worker) failed(now time.Time, err error, outcome string) {
	w.notBefore = now.Add(retry.Backoff(w.failures, w.s.cfg.BackoffBase, w.s.cfg.BackoffMax))
	w.failures++
	w.health.failing = true
	w.health.unavailable = outcome == "unavailable"
	w.health.lastAttempt = now
	w.health.lastError = errText(err)
	lvl := w.log.Info
	if w.failures == 1 || w.failures%10 == 0 {
		lvl = w.log.Warn
	}
	lvl("provider sync step failed; backing off", zap.String("outcome", outcome), zap.Int("failures_in_a_row", w.failures),
		zap.Duration("backoff", w.notBefore.Sub(now)), zap.Error(err))
}

// succeeded records a page fetched, published and recorded.
func (w *worker) succeeded(now time.Time) {
	w.health.lastSuccess, w.health.lastAttempt = now, now
	w.health.failing, w.health.unavailable, w.health.lastError = false, false, ""
	w.s.m.lastSuccess.WithLabelValues(w.name).Set(float64(now.UnixNano()) / 1e9)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}

// stepLive fetches, publishes and records one page of the live change feed.
func (w *worker) stepLive(ctx context.Context) error {
	if !w.live.walking {
		w.live.query = feed.Query{From: w.feed.Rewind(w.live.cursor, w.s.cfg.Overlap), Page: 1, Size: w.pageSize}
		w.live.walking = true
	}
	q := w.live.query
	page, asked, err := w.fetch(ctx, StreamLive, func(c context.Context) (feed.Page, error) { return w.feed.Changes(c, q) })
	if err != nil {
		switch feed.Classify(err).String() {
		case "gone":
			// The provider no longer knows the cursor (its feed restarted):
			// read it again from the beginning; duplicates are harmless.
			w.log.Warn("the provider refused the saved cursor as gone; reading its feed from the beginning",
				zap.String("cursor", w.live.cursor), zap.Error(err))
			w.live.cursor, w.live.walking = "", false
		case "too_large":
			w.pageSize = max(1, w.pageSize/2)
			w.live.walking = false
		case "client_error", "redirect":
			w.live.walking = false
		}
		return nil
	}
	res, err := w.publish(ctx, envelope.SourcePoll, page, true)
	if err != nil {
		return err
	}
	if err := w.hook(StreamLive); err != nil {
		return err
	}
	next := w.feed.Later(w.live.cursor, page.Next)
	if next != w.live.cursor {
		pctx, cancel := persistCtx(ctx)
		defer cancel()
		if err := w.s.st.SaveCursor(pctx, w.name, w.s.cfg.Holder, string(StreamLive), next); err != nil {
			return err
		}
		w.live.cursor = next
	}
	now := time.Now()
	w.succeeded(now)
	if t, ok := w.feed.CursorTime(w.live.cursor); ok {
		w.s.m.cursorTime.WithLabelValues(w.name).Set(float64(t.UnixNano()) / 1e9)
	}
	if res.published > 0 || res.deadLettered > 0 {
		w.log.Debug("live page published", zap.Int("events", res.published), zap.Int("dead_lettered", res.deadLettered),
			zap.Int("skipped_overlap", res.skipped), zap.String("cursor", w.live.cursor))
	}
	if page.More {
		w.live.query = page.NextQuery
		return nil
	}
	w.live.walking = false
	w.live.caughtUp = asked
	w.live.due = asked.Add(w.s.cfg.Interval)
	w.pageSize = w.s.cfg.PageSize
	return nil
}

// stepRefresh fetches and publishes one page of a movie's current state.
func (w *worker) stepRefresh(ctx context.Context) error {
	r := w.refresh
	if r.started.IsZero() {
		started, err := w.s.st.StartRefresh(ctx, w.s.cfg.Holder, r.job)
		if err != nil {
			return err
		}
		r.started, r.query = started, feed.Query{Page: 1, Size: w.pageSize}
	}
	q := r.query
	page, _, err := w.fetch(ctx, StreamRefresh, func(c context.Context) (feed.Page, error) {
		return w.feed.Movie(c, r.job.MovieID, q)
	})
	if err != nil {
		if feed.Classify(err).Retryable() || feed.Classify(err).String() == "breaker_open" || ctx.Err() != nil {
			return nil
		}
		if feed.Classify(err).String() == "too_large" && q.Size > 1 {
			r.query = feed.Query{Page: 1, Size: max(1, q.Size/2)}
			return nil
		}
		return w.finishRefresh(ctx, store.StatusFailed, errText(err))
	}
	res, err := w.publish(ctx, envelope.SourceRefresh, page, false)
	if err != nil {
		return err
	}
	r.pages++
	r.events += res.published
	w.succeeded(time.Now())
	if page.More {
		r.query = page.NextQuery
		return nil
	}
	if err := w.hook(StreamRefresh); err != nil {
		return err
	}
	return w.finishRefresh(ctx, store.StatusDone, "")
}

func (w *worker) finishRefresh(ctx context.Context, status, failure string) error {
	r := w.refresh
	pctx, cancel := persistCtx(ctx)
	defer cancel()
	n, err := w.s.st.FinishRefresh(pctx, w.s.cfg.Holder, r.job, r.started, status, r.pages, r.events, failure)
	if err != nil {
		return err
	}
	w.s.m.refreshes.WithLabelValues(w.name, status).Inc()
	w.log.Info("refresh finished", zap.String("movie_id", r.job.MovieID), zap.String("request_id", r.job.RequestID),
		zap.String("status", status), zap.Int("requests_served", n), zap.Int("events", r.events), zap.String("error", failure))
	w.refresh = nil
	w.nextQueueCheck = time.Time{}
	return nil
}

// stepBackfill fetches, publishes and records one page of a backfill.
func (w *worker) stepBackfill(ctx context.Context) error {
	b := w.backfill
	if !b.started {
		if err := w.s.st.StartBackfill(ctx, w.s.cfg.Holder, b.job); err != nil {
			return err
		}
		b.started = true
		b.query = feed.Query{From: b.job.Cursor, Since: b.job.Since, Page: 1, Size: w.pageSize}
		w.log.Info("backfill runs", zap.String("request_id", b.job.RequestID), zap.Time("since", b.job.Since),
			zap.String("cursor", b.job.Cursor), zap.Int64("pages_before", b.job.Pages))
	}
	q := b.query
	page, _, err := w.fetch(ctx, StreamBackfill, func(c context.Context) (feed.Page, error) { return w.feed.Changes(c, q) })
	if err != nil {
		if feed.Classify(err).Retryable() || feed.Classify(err).String() == "breaker_open" || ctx.Err() != nil {
			return nil
		}
		if feed.Classify(err).String() == "too_large" && q.Size > 1 {
			b.query = feed.Query{From: b.job.Cursor, Since: b.job.Since, Page: 1, Size: max(1, q.Size/2)}
			return nil
		}
		return w.finishBackfill(ctx, store.StatusFailed, errText(err))
	}
	res, err := w.publish(ctx, envelope.SourceBackfill, page, false)
	if err != nil {
		return err
	}
	if err := w.hook(StreamBackfill); err != nil {
		return err
	}
	cursor := w.feed.Later(b.job.Cursor, page.Next)
	pctx, cancel := persistCtx(ctx)
	defer cancel()
	if err := w.s.st.BackfillPage(pctx, w.s.cfg.Holder, b.job, cursor, res.published); err != nil {
		return err
	}
	w.succeeded(time.Now())
	w.s.m.backfillPages.WithLabelValues(w.name).Inc()
	w.s.m.backfillEvents.WithLabelValues(w.name).Add(float64(res.published))
	if t, ok := w.feed.CursorTime(cursor); ok {
		w.s.m.backfillCursor.WithLabelValues(w.name).Set(float64(t.UnixNano()) / 1e9)
	} else if !res.newest.IsZero() {
		w.s.m.backfillCursor.WithLabelValues(w.name).Set(float64(res.newest.UnixNano()) / 1e9)
	}
	if page.More {
		b.query = page.NextQuery
		return nil
	}
	return w.finishBackfill(ctx, store.StatusDone, "")
}

func (w *worker) finishBackfill(ctx context.Context, status, failure string) error {
	b := w.backfill
	if err := w.s.st.FinishBackfill(ctx, w.s.cfg.Holder, b.job, status, failure); err != nil {
		return err
	}
	w.s.m.backfillDone.WithLabelValues(w.name, status).Inc()
	w.s.m.backfillCursor.WithLabelValues(w.name).Set(0)
	w.log.Info("backfill finished", zap.String("request_id", b.job.RequestID), zap.String("status", status),
		zap.Int64("pages", b.job.Pages), zap.Int64("events", b.job.Events), zap.String("error", failure))
	w.backfill = nil
	w.nextQueueCheck = time.Time{}
	return nil
}

// persistCtx is the context of a write that records work already done
// (events acknowledged by Kafka): a stopping poller still records it, so a
// clean stop does not make the next start re-read. The write stays fenced by
// the lease, so a lost lease still refuses it.
func persistCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
}

func (w *worker) hook(stream Stream) error {
	if f := w.s.cfg.Hooks.BeforeCursorSave; f != nil {
		if err := f(w.name, string(stream)); err != nil {
			return errAbort{err}
		}
	}
	return nil
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
			w.refresh = &refreshState{job: r}
		}
	}
	if w.backfill == nil {
		b, err := w.s.st.NextBackfill(ctx, w.name)
		if err != nil {
			return err
		}
		if b != nil {
			w.backfill = &backfillState{job: b}
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
	s := w.bucket.Snapshot(now)
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

// saveHealth writes provider_health when the status or breaker state
// changed, or at most once a second while something else changed.
func (w *worker) saveHealth(ctx context.Context, now time.Time, force bool) {
	if w.term == nil {
		return
	}
	state := w.breaker.State()
	h := store.Health{
		Provider: w.name,
		Status: healthStatus(state, w.health.failing, w.health.unavailable, w.health.lastSuccess, w.term.start, now,
			max(3*w.s.cfg.Interval, 30*time.Second)),
		LastSuccessAt: w.health.lastSuccess,
		LastAttemptAt: w.health.lastAttempt,
		LastError:     w.health.lastError,
		BreakerState:  state.String(),
	}
	if h.LastAttemptAt.IsZero() {
		return // nothing to say yet
	}
	prev := w.health.saved
	changed := h.Status != prev.Status || h.BreakerState != prev.BreakerState
	if !force && !changed && (h == prev || now.Sub(w.health.savedAt) < time.Second) {
		return
	}
	if err := w.s.st.SaveHealth(ctx, w.s.cfg.Holder, h); err != nil {
		if !errors.Is(err, store.ErrLeaseLost) && ctx.Err() == nil {
			w.log.Warn("could not save provider health", zap.Error(err))
		}
		return
	}
	if changed {
		w.log.Info("provider health", zap.String("status", h.Status), zap.String("breaker", h.BreakerState),
			zap.String("last_error", h.LastError))
	}
	w.health.saved, w.health.savedAt = h, now
}
