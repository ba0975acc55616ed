// Package fetch decides, for one provider, whether the poller may send a
// request now and what the answer means for the next one. A Fetcher owns the
// provider's request budget (a token bucket kept in step with its rate-limit
// headers and Retry-After), its circuit breaker and the backoff after
// failures, so no other code of the poller touches them.
package fetch

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/reviewpipe/reviewpipe/pkg/retry"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/budget"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/feed"
)

// Config configures a Fetcher. Every field but OnBreakerChange is required.
type Config struct {
	// Name names the provider (the breaker's name).
	Name string
	// Rate is the most requests per second to send (POLL_RATE_<PROVIDER>).
	Rate float64
	// Headroom is the fraction of the provider's published limit left
	// unused (see budget.Bucket.SetHeadroom).
	Headroom float64
	// BackoffBase and BackoffMax shape the exponential backoff with full
	// jitter after failures.
	BackoffBase, BackoffMax time.Duration
	// BreakerFailures provider faults in a row open the breaker;
	// BreakerTimeout later it lets one probe through.
	BreakerFailures int
	BreakerTimeout  time.Duration
	// OnBreakerChange, if set, is called on every breaker state change, on
	// the goroutine that caused it (Fetch, Delay or BreakerState).
	OnBreakerChange func(from, to gobreaker.State)
}

// Fetcher sends one provider's requests one at a time within its budget,
// through its breaker, backing off after failures. It is not safe for
// concurrent use: one worker goroutine owns it. Its state lives as long as
// the process, so a lease lost and taken again does not reset it.
type Fetcher struct {
	cfg     Config
	bucket  *budget.Bucket
	breaker *gobreaker.CircuitBreaker[feed.Page]
	// failures in a row, and no request before notBefore.
	failures  int
	notBefore time.Time
	openedAt  time.Time // when the breaker last opened
}

// New returns a Fetcher with a full bucket and a closed breaker.
func New(cfg Config) *Fetcher {
	f := &Fetcher{cfg: cfg, bucket: budget.New(cfg.Rate, 1, time.Now())}
	f.bucket.SetHeadroom(cfg.Headroom)
	f.breaker = gobreaker.NewCircuitBreaker[feed.Page](gobreaker.Settings{
		Name:        cfg.Name,
		MaxRequests: 1,
		Timeout:     cfg.BreakerTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(cfg.BreakerFailures) },
		// Only the provider's own faults count; our rate, refused
		// requests and requests cut short by a lease's end do not.
		IsExcluded: func(err error) bool {
			var ab abandoned
			return err != nil && (errors.As(err, &ab) || !feed.Classify(err).ProviderFault())
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				f.openedAt = time.Now()
			}
			if cfg.OnBreakerChange != nil {
				cfg.OnBreakerChange(from, to)
			}
		},
	})
	return f
}

// Delay is how long from now until the next request may go: the budget, the
// backoff after failures and an open breaker all hold it back. Callers wait
// it out before Fetch.
func (f *Fetcher) Delay(now time.Time) time.Duration {
	d := f.bucket.Delay(now)
	if b := f.notBefore.Sub(now); b > d {
		d = b
	}
	if f.breaker.State() == gobreaker.StateOpen {
		if b := f.openedAt.Add(f.cfg.BreakerTimeout).Sub(now); b > d {
			d = b
		}
		d = max(d, 10*time.Millisecond)
	}
	return d
}

// Backoff is the hold a failure put on requests.
type Backoff struct {
	// Wait is how long no request goes (drawn with full jitter).
	Wait time.Duration
	// InARow counts the failures in a row, this one included.
	InARow int
}

// Result is what one Fetch did.
type Result struct {
	// Page is the page fetched; its Answer carries the budget headers even
	// when Err is set.
	Page feed.Page
	// Err is the request's error, nil for OK.
	Err error
	// Outcome classifies Err; BreakerOpen when the breaker refused to send.
	Outcome feed.Outcome
	// Sent is when the token was spent; Done when the answer was in.
	Sent, Done time.Time
	// Abandoned is true when there is nothing to learn from the request:
	// it was cut short because ctx or the deadline ended, or not sent for
	// want of a token. Nothing about the provider was recorded.
	Abandoned bool
	// Backoff is set when the outcome counted as a failure (anything but
	// OK, RateLimited and BreakerOpen); InARow is 0 otherwise.
	Backoff Backoff
}

// Failed reports whether the request counted as a failure and backed off.
func (r Result) Failed() bool { return r.Backoff.InARow > 0 }

// errNoToken is a Fetch called before Delay allowed it: a bug of the caller.
var errNoToken = errors.New("no budget (internal: fetch without a token)")

// Fetch spends a token and sends one request through the breaker: call,
// with a context that ends at ctx's end or deadline. It then brings the
// budget, backoff and breaker in step with the answer:
//   - OK ends the backoff;
//   - RateLimited pauses the budget for the answer's Retry-After, or, without
//     one, for a backoff that grows with each 429 in a row;
//   - BreakerOpen changes nothing: Delay waits for the breaker's timeout;
//   - any other outcome backs off, and a Retry-After pauses the budget too.
//
// It blocks for the request's duration.
func (f *Fetcher) Fetch(ctx context.Context, deadline time.Time, call func(context.Context) (feed.Page, error)) Result {
	start := time.Now()
	if !f.bucket.Take(start) {
		return Result{Err: errNoToken, Outcome: feed.Classify(errNoToken), Sent: start, Done: start, Abandoned: true}
	}
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	page, err := f.breaker.Execute(func() (feed.Page, error) {
		p, err := call(rctx)
		if err != nil && (rctx.Err() != nil || ctx.Err() != nil) {
			err = abandoned{err}
		}
		return p, err
	})
	now := time.Now()
	f.bucket.Observe(now, page.Answer.Budget)
	res := Result{Page: page, Err: err, Outcome: classify(err), Sent: start, Done: now}
	var ab abandoned
	if errors.As(err, &ab) {
		res.Abandoned = true
		return res
	}
	retryAfter := page.Answer.Budget.RetryAfter
	switch res.Outcome {
	case feed.OK:
		f.failures, f.notBefore = 0, time.Time{}
	case feed.BreakerOpen:
		// Delay waits for the breaker's timeout.
	case feed.RateLimited:
		// The provider says when: obey it; without Retry-After back off.
		if retryAfter != nil {
			f.bucket.Pause(now, max(*retryAfter, 100*time.Millisecond))
		} else {
			f.bucket.Pause(now, retry.Backoff(f.failures, f.cfg.BackoffBase, f.cfg.BackoffMax))
			f.failures++
		}
	default:
		res.Backoff = f.BackOff(now)
		if retryAfter != nil {
			f.bucket.Pause(now, *retryAfter)
		}
	}
	return res
}

// BackOff records a failure at now, the provider's or a later step's (a
// Kafka or PostgreSQL write): no request goes for a backoff with full
// jitter that doubles with each failure in a row, up to BackoffMax.
func (f *Fetcher) BackOff(now time.Time) Backoff {
	wait := retry.Backoff(f.failures, f.cfg.BackoffBase, f.cfg.BackoffMax)
	f.notBefore = now.Add(wait)
	f.failures++
	return Backoff{Wait: wait, InARow: f.failures}
}

// BreakerState is the breaker's state now.
func (f *Fetcher) BreakerState() gobreaker.State { return f.breaker.State() }

// Budget is the request budget's state at now, for metrics.
func (f *Fetcher) Budget(now time.Time) budget.Snapshot { return f.bucket.Snapshot(now) }

// classify is feed.Classify with the breaker's refusals: ErrOpenState
// while it is open, ErrTooManyRequests while its half-open probe is out.
func classify(err error) feed.Outcome {
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return feed.BreakerOpen
	}
	return feed.Classify(err)
}

// abandoned is a request cut short because its context or deadline ended
// (a lease term's end, a stopping poller): not the provider's fault.
type abandoned struct{ err error }

func (a abandoned) Error() string { return a.err.Error() }
func (a abandoned) Unwrap() error { return a.err }
