package app

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/services/poller/internal/feed"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/store"
)

// refreshStream serves one refresh job: it reads every page of the movie's
// current state from the provider and publishes it, then records the job
// done (with every request for the movie queued before it started).
type refreshStream struct {
	w       *worker
	job     *store.Refresh
	started time.Time // database time StartRefresh returned; zero before
	query   feed.Query
	pages   int
	events  int
	over    bool
}

func (r *refreshStream) kind() Stream { return StreamRefresh }
func (r *refreshStream) done() bool   { return r.over }

func (r *refreshStream) next(ctx context.Context) (feed.Query, error) {
	if r.started.IsZero() {
		started, err := r.w.s.st.StartRefresh(ctx, r.w.s.cfg.Holder, r.job)
		if err != nil {
			return feed.Query{}, err
		}
		r.started, r.query = started, feed.Query{Page: 1, Size: r.w.pageSize}
	}
	return r.query, nil
}

func (r *refreshStream) call(ctx context.Context, q feed.Query) (feed.Page, error) {
	return r.w.feed.Movie(ctx, r.job.MovieID, q)
}

func (r *refreshStream) recover(ctx context.Context, rc recovery, err error) error {
	switch rc {
	case retry:
		return nil
	case smallerPages:
		r.query = feed.Query{Page: 1, Size: max(1, r.query.Size/2)}
		return nil
	}
	return r.finish(ctx, store.StatusFailed, errText(err))
}

func (r *refreshStream) record(_ context.Context, _ feed.Page, res published) error {
	r.pages++
	r.events += res.published
	return nil
}

// advance finishes the job after its last page; the hook runs before that
// write, which is what makes the refresh count as served.
func (r *refreshStream) advance(ctx context.Context, p feed.Page, _ time.Time) error {
	if p.More {
		r.query = p.NextQuery
		return nil
	}
	if err := r.w.hook(StreamRefresh); err != nil {
		return err
	}
	return r.finish(ctx, store.StatusDone, "")
}

func (r *refreshStream) finish(ctx context.Context, status, failure string) error {
	w := r.w
	pctx, cancel := persistCtx(ctx)
	defer cancel()
	n, err := w.s.st.FinishRefresh(pctx, w.s.cfg.Holder, r.job, r.started, status, r.pages, r.events, failure)
	if err != nil {
		return err
	}
	w.s.m.refreshes.WithLabelValues(w.name, status).Inc()
	w.log.Info("refresh finished", zap.String("movie_id", r.job.MovieID), zap.String("request_id", r.job.RequestID),
		zap.String("status", status), zap.Int("requests_served", n), zap.Int("events", r.events), zap.String("error", failure))
	r.over = true
	return nil
}
