package app

import (
	"context"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/feed"
)

// stream is one sequence of pages a worker reads from its provider: the
// live change feed (liveStream), one movie's refresh (refreshStream) or one
// backfill (backfillStream). A stream holds its position, the query of its
// next page, and decides what a page or a failed request does to it; the
// worker decides which stream sends next (choose) and carries each page
// from the provider to Kafka (step). Its methods run on the worker's
// goroutine; an error they return is the worker's to handle (it backs off,
// and the stream is where it was).
type stream interface {
	// kind names the stream in metrics, hooks and poll_cursors.
	kind() Stream
	// next readies the next page and returns its query: the first time, it
	// records a job as running, or starts a live pass at the saved cursor.
	next(ctx context.Context) (feed.Query, error)
	// call sends the request for the page q.
	call(ctx context.Context, q feed.Query) (feed.Page, error)
	// recover applies what judge says a failed request calls for; err is
	// the request's error.
	recover(ctx context.Context, r recovery, err error) error
	// record saves what page p covers (a cursor, a job's progress) once
	// Kafka has acknowledged its events. Hooks.BeforeCursorSave runs just
	// before whatever write makes the page's events count as read.
	record(ctx context.Context, p feed.Page, res published) error
	// advance moves to the page after p, or completes the stream when p
	// was its last; asked is when p was asked for.
	advance(ctx context.Context, p feed.Page, asked time.Time) error
	// done reports that the stream's job has been recorded done or failed;
	// the live stream is never done.
	done() bool
}

// source is what raw envelopes of the stream's pages say they come from.
func (k Stream) source() envelope.Source {
	switch k {
	case StreamRefresh:
		return envelope.SourceRefresh
	case StreamBackfill:
		return envelope.SourceBackfill
	}
	return envelope.SourcePoll
}

// rewinds reports whether the stream re-reads over an overlap window: only
// live passes do, so only they skip what this process published lately.
func (k Stream) rewinds() bool { return k == StreamLive }

// recovery is what a stream does after a request failed.
type recovery int

const (
	// retry sends the same request again, once the fetcher allows.
	retry recovery = iota
	// restart begins the live pass again at the saved cursor.
	restart
	// forgetCursor reads the provider's feed again from its beginning:
	// the provider no longer knows the saved cursor.
	forgetCursor
	// smallerPages asks again from the stream's start with pages half the
	// size: the answer was over POLL_MAX_RESPONSE_BYTES.
	smallerPages
	// giveUp records the job failed with the request's error.
	giveUp
)

func (r recovery) String() string {
	return [...]string{"retry", "restart", "forget_cursor", "smaller_pages", "give_up"}[r]
}

// judge decides what a stream of kind k does after a request with outcome o
// failed; size is the page size asked for, stopping says the poller or the
// lease term is ending. Live sync never gives up: it retries what may pass
// later and starts its pass again otherwise. A job retries what may pass
// later (a breaker refusal included) and whatever a stop cut short, asks
// for smaller pages while it can, and fails otherwise.
func judge(k Stream, o feed.Outcome, size int, stopping bool) recovery {
	if k == StreamLive {
		switch o {
		case feed.Gone:
			return forgetCursor
		case feed.TooLarge:
			return smallerPages
		case feed.ClientError, feed.Redirect:
			return restart
		}
		return retry
	}
	switch {
	case o.Retryable() || stopping:
		return retry
	case o == feed.TooLarge && size > 1:
		return smallerPages
	}
	return giveUp
}

// step sends one request for s and carries its page through Kafka to s's
// saved position: next, fetch, publish, hook, record, advance. A failed
// request is not an error: s recovers from it as judge says, and the
// fetcher has already backed off. An error is a step that failed after the
// request (Kafka, PostgreSQL) or a hook's errAbort.
func (w *worker) step(ctx context.Context, s stream) error {
	q, err := s.next(ctx)
	if err != nil {
		return err
	}
	res := w.request(ctx, s.kind(), func(c context.Context) (feed.Page, error) { return s.call(c, q) })
	if res.Err != nil {
		return s.recover(ctx, judge(s.kind(), res.Outcome, q.Size, ctx.Err() != nil), res.Err)
	}
	pub, err := w.pub.publish(ctx, s.kind().source(), res.Page, s.kind().rewinds())
	if err != nil {
		return err
	}
	if err := s.record(ctx, res.Page, pub); err != nil {
		return err
	}
	w.succeeded(time.Now())
	return s.advance(ctx, res.Page, res.Sent)
}

// persistCtx is the context of a write that records work already done
// (events acknowledged by Kafka): a stopping poller still records it, so a
// clean stop does not make the next start re-read. The write stays fenced by
// the lease, so a lost lease still refuses it.
func persistCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
}

// hook runs Config.Hooks.BeforeCursorSave, if set; its error ends the
// poller as a crash would.
func (w *worker) hook(stream Stream) error {
	if f := w.s.cfg.Hooks.BeforeCursorSave; f != nil {
		if err := f(w.name, string(stream)); err != nil {
			return errAbort{err}
		}
	}
	return nil
}
