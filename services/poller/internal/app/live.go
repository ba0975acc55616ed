package app

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/services/poller/internal/feed"
)

// liveStream is the live sync of the provider's change feed: every
// Config.Interval a pass reads the feed from the saved cursor, rewound by
// Config.Overlap, to its end. The cursor is saved after each page's events
// are in Kafka and never moves back (feed.Later), so it is never ahead of
// the data.
type liveStream struct {
	w       *worker
	cursor  string     // saved cursor
	walking bool       // a pass is under way
	query   feed.Query // the next page of the pass
	due     time.Time  // when the next pass starts
	// caughtUp is when the last page that reached the feed's end was
	// asked for: every change recorded before it has been read.
	caughtUp time.Time
}

func (l *liveStream) kind() Stream { return StreamLive }
func (l *liveStream) done() bool   { return false }

// ready reports whether a pass is under way or due at now.
func (l *liveStream) ready(now time.Time) bool { return l.walking || !now.Before(l.due) }

func (l *liveStream) next(context.Context) (feed.Query, error) {
	if !l.walking {
		l.query = feed.Query{From: l.w.feed.Rewind(l.cursor, l.w.s.cfg.Overlap), Page: 1, Size: l.w.pageSize}
		l.walking = true
	}
	return l.query, nil
}

func (l *liveStream) call(ctx context.Context, q feed.Query) (feed.Page, error) {
	return l.w.feed.Changes(ctx, q)
}

func (l *liveStream) recover(_ context.Context, r recovery, err error) error {
	switch r {
	case forgetCursor:
		// The provider no longer knows the cursor (its feed restarted):
		// read it again from the beginning; duplicates are harmless.
		l.w.log.Warn("the provider refused the saved cursor as gone; reading its feed from the beginning",
			zap.String("cursor", l.cursor), zap.Error(err))
		l.cursor, l.walking = "", false
	case smallerPages:
		l.w.pageSize = max(1, l.w.pageSize/2)
		l.walking = false
	case restart, giveUp:
		l.walking = false
	}
	return nil
}

func (l *liveStream) record(ctx context.Context, p feed.Page, res published) error {
	w := l.w
	if err := w.hook(StreamLive); err != nil {
		return err
	}
	if next := w.feed.Later(l.cursor, p.Next); next != l.cursor {
		pctx, cancel := persistCtx(ctx)
		defer cancel()
		if err := w.s.st.SaveCursor(pctx, w.name, w.s.cfg.Holder, string(StreamLive), next); err != nil {
			return err
		}
		l.cursor = next
	}
	if t, ok := w.feed.CursorTime(l.cursor); ok {
		w.s.m.cursorTime.WithLabelValues(w.name).Set(float64(t.UnixNano()) / 1e9)
	}
	if res.published > 0 || res.deadLettered > 0 {
		w.log.Debug("live page published", zap.Int("events", res.published), zap.Int("dead_lettered", res.deadLettered),
			zap.Int("skipped_overlap", res.skipped), zap.String("cursor", l.cursor))
	}
	return nil
}

// advance ends the pass at the feed's end: the next one is due an interval
// after this page was asked for, with the configured page size again.
func (l *liveStream) advance(_ context.Context, p feed.Page, asked time.Time) error {
	if p.More {
		l.query = p.NextQuery
		return nil
	}
	l.walking = false
	l.caughtUp = asked
	l.due = asked.Add(l.w.s.cfg.Interval)
	l.w.pageSize = l.w.s.cfg.PageSize
	return nil
}
