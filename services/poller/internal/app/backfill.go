package app

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/services/poller/internal/feed"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/store"
)

// backfillStream serves one backfill job: it walks the change feed from the
// job's since (or the cursor it reached before a restart) to the feed's
// end, recording cursor, pages and events after each page's events are in
// Kafka. It only gets the budget live sync and refreshes leave (choose).
type backfillStream struct {
	w       *worker
	job     *store.Backfill
	query   feed.Query
	started bool
	over    bool
}

func (b *backfillStream) kind() Stream { return StreamBackfill }
func (b *backfillStream) done() bool   { return b.over }

func (b *backfillStream) next(ctx context.Context) (feed.Query, error) {
	if !b.started {
		if err := b.w.s.st.StartBackfill(ctx, b.w.s.cfg.Holder, b.job); err != nil {
			return feed.Query{}, err
		}
		b.started = true
		b.query = b.from(b.w.pageSize)
		b.w.log.Info("backfill runs", zap.String("request_id", b.job.RequestID), zap.Time("since", b.job.Since),
			zap.String("cursor", b.job.Cursor), zap.Int64("pages_before", b.job.Pages))
	}
	return b.query, nil
}

// from is the query of the first page after the job's recorded cursor.
func (b *backfillStream) from(size int) feed.Query {
	return feed.Query{From: b.job.Cursor, Since: b.job.Since, Page: 1, Size: size}
}

func (b *backfillStream) call(ctx context.Context, q feed.Query) (feed.Page, error) {
	return b.w.feed.Changes(ctx, q)
}

func (b *backfillStream) recover(ctx context.Context, r recovery, err error) error {
	switch r {
	case retry:
		return nil
	case smallerPages:
		b.query = b.from(max(1, b.query.Size/2))
		return nil
	}
	return b.finish(ctx, store.StatusFailed, errText(err))
}

func (b *backfillStream) record(ctx context.Context, p feed.Page, res published) error {
	w := b.w
	if err := w.hook(StreamBackfill); err != nil {
		return err
	}
	cursor := w.feed.Later(b.job.Cursor, p.Next)
	pctx, cancel := persistCtx(ctx)
	defer cancel()
	if err := w.s.st.BackfillPage(pctx, w.s.cfg.Holder, b.job, cursor, res.published); err != nil {
		return err
	}
	w.s.m.backfillPages.WithLabelValues(w.name).Inc()
	w.s.m.backfillEvents.WithLabelValues(w.name).Add(float64(res.published))
	if t, ok := w.feed.CursorTime(cursor); ok {
		w.s.m.backfillCursor.WithLabelValues(w.name).Set(float64(t.UnixNano()) / 1e9)
	} else if !res.newest.IsZero() {
		w.s.m.backfillCursor.WithLabelValues(w.name).Set(float64(res.newest.UnixNano()) / 1e9)
	}
	return nil
}

func (b *backfillStream) advance(ctx context.Context, p feed.Page, _ time.Time) error {
	if p.More {
		b.query = p.NextQuery
		return nil
	}
	return b.finish(ctx, store.StatusDone, "")
}

func (b *backfillStream) finish(ctx context.Context, status, failure string) error {
	w := b.w
	if err := w.s.st.FinishBackfill(ctx, w.s.cfg.Holder, b.job, status, failure); err != nil {
		return err
	}
	w.s.m.backfillDone.WithLabelValues(w.name, status).Inc()
	w.s.m.backfillCursor.WithLabelValues(w.name).Set(0)
	w.log.Info("backfill finished", zap.String("request_id", b.job.RequestID), zap.String("status", status),
		zap.Int64("pages", b.job.Pages), zap.Int64("events", b.job.Events), zap.String("error", failure))
	b.over = true
	return nil
}
