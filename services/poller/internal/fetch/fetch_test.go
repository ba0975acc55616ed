package fetch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/reviewpipe/reviewpipe/services/poller/internal/budget"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/feed"
)

// newFetcher returns a fetcher whose budget never holds a test back (a
// token every microsecond) and whose breaker opens on the first fault.
func newFetcher(timeout time.Duration) *Fetcher {
	return New(Config{Name: "generic", Rate: 1e6, BackoffBase: 250 * time.Millisecond, BackoffMax: 30 * time.Second,
		BreakerFailures: 1, BreakerTimeout: timeout})
}

func answer(status int, retryAfter *time.Duration) func(context.Context) (feed.Page, error) {
	return func(context.Context) (feed.Page, error) {
		p := feed.Page{Answer: feed.Answer{Budget: budget.Headers{RetryAfter: retryAfter}}}
		if status == 200 {
			return p, nil
		}
		return p, &feed.StatusError{Status: status, RetryAfter: retryAfter}
	}
}

// waitToken waits for the budget's next token (a microsecond at 1e6/s).
func waitToken(t *testing.T, f *Fetcher) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for f.Budget(time.Now()).Tokens < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no token within a second")
		}
	}
}

func TestOpenBreakerRefusesAsBreakerOpen(t *testing.T) {
	f := newFetcher(time.Minute)
	far := time.Now().Add(time.Minute)
	res := f.Fetch(context.Background(), far, answer(500, nil))
	if res.Outcome != feed.ServerError || !res.Failed() || res.Backoff.InARow != 1 {
		t.Fatalf("500: %+v", res)
	}
	if f.BreakerState() != gobreaker.StateOpen {
		t.Fatalf("breaker %s after a fault with BreakerFailures 1", f.BreakerState())
	}
	waitToken(t, f)
	called := false
	res = f.Fetch(context.Background(), far, func(context.Context) (feed.Page, error) {
		called = true
		return feed.Page{}, nil
	})
	if called {
		t.Fatal("an open breaker let the request through")
	}
	if !errors.Is(res.Err, gobreaker.ErrOpenState) || res.Outcome != feed.BreakerOpen {
		t.Fatalf("open breaker: outcome %s, err %v; want breaker_open from gobreaker.ErrOpenState", res.Outcome, res.Err)
	}
	// A refusal is no news about the provider: no backoff, not abandoned
	// (it is counted in metrics), and the stream retries.
	if res.Failed() || res.Abandoned || !res.Outcome.Retryable() || res.Outcome.ProviderFault() {
		t.Fatalf("open breaker: %+v", res)
	}
	if d := f.Delay(time.Now()); d < 50*time.Second {
		t.Fatalf("Delay %s with the breaker open for a minute", d)
	}
}

func TestHalfOpenBreakerRefusesASecondProbe(t *testing.T) {
	f := newFetcher(20 * time.Millisecond)
	far := time.Now().Add(time.Minute)
	f.Fetch(context.Background(), far, answer(503, nil))
	deadline := time.Now().Add(5 * time.Second)
	for f.BreakerState() != gobreaker.StateHalfOpen {
		if time.Now().After(deadline) {
			t.Fatalf("breaker %s, want half-open after its timeout", f.BreakerState())
		}
		time.Sleep(time.Millisecond) // the breaker's own clock: no condition to wait on
	}
	var inner Result
	outer := f.Fetch(context.Background(), far, func(ctx context.Context) (feed.Page, error) {
		waitToken(t, f)
		inner = f.Fetch(ctx, far, answer(200, nil)) // while the probe is out
		return feed.Page{}, nil
	})
	if !errors.Is(inner.Err, gobreaker.ErrTooManyRequests) || inner.Outcome != feed.BreakerOpen || inner.Failed() {
		t.Fatalf("second probe: outcome %s, err %v; want breaker_open from gobreaker.ErrTooManyRequests", inner.Outcome, inner.Err)
	}
	if outer.Outcome != feed.OK || f.BreakerState() != gobreaker.StateClosed {
		t.Fatalf("probe %s, breaker %s; want ok and closed", outer.Outcome, f.BreakerState())
	}
}

func TestFetchOutcomes(t *testing.T) {
	sec := time.Second
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter *time.Duration
		failed     bool
		breaker    gobreaker.State
		paused     bool // the budget holds every request back
	}{
		{"ok", 200, nil, false, gobreaker.StateClosed, false},
		{"429 with Retry-After", 429, &sec, false, gobreaker.StateClosed, true},
		{"429 without Retry-After", 429, nil, false, gobreaker.StateClosed, true},
		{"503 with Retry-After", 503, &sec, true, gobreaker.StateOpen, true},
		{"500", 500, nil, true, gobreaker.StateOpen, false},
		{"401 does not count for the breaker", 401, nil, true, gobreaker.StateClosed, false},
		{"410", 410, nil, true, gobreaker.StateClosed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFetcher(time.Minute)
			res := f.Fetch(context.Background(), time.Now().Add(time.Minute), answer(tc.status, tc.retryAfter))
			if res.Failed() != tc.failed || res.Abandoned {
				t.Fatalf("failed %v abandoned %v, want %v false", res.Failed(), res.Abandoned, tc.failed)
			}
			if f.BreakerState() != tc.breaker {
				t.Fatalf("breaker %s, want %s", f.BreakerState(), tc.breaker)
			}
			if paused := f.Budget(time.Now()).PausedFor > 0; paused != tc.paused {
				t.Fatalf("budget paused %v, want %v", paused, tc.paused)
			}
		})
	}
}

func TestCutShortIsAbandoned(t *testing.T) {
	f := newFetcher(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	res := f.Fetch(ctx, time.Now().Add(time.Minute), func(c context.Context) (feed.Page, error) {
		cancel()
		<-c.Done()
		return feed.Page{}, c.Err()
	})
	if !res.Abandoned || res.Failed() || f.BreakerState() != gobreaker.StateClosed {
		t.Fatalf("cut short: %+v, breaker %s", res, f.BreakerState())
	}
	// Without a token nothing is sent.
	f = New(Config{Name: "generic", Rate: 0.001, BackoffBase: time.Millisecond, BackoffMax: time.Second, BreakerFailures: 1, BreakerTimeout: time.Second})
	f.Fetch(context.Background(), time.Now().Add(time.Minute), answer(200, nil))
	res = f.Fetch(context.Background(), time.Now().Add(time.Minute), func(context.Context) (feed.Page, error) {
		t.Fatal("sent without a token")
		return feed.Page{}, nil
	})
	if !res.Abandoned || res.Err == nil || !res.Outcome.Retryable() {
		t.Fatalf("no token: %+v", res)
	}
}

func TestBackOffGrowsAndOKEndsIt(t *testing.T) {
	f := newFetcher(time.Minute)
	now := time.Now()
	for i := 1; i <= 3; i++ {
		b := f.BackOff(now)
		if b.InARow != i || b.Wait < 0 || b.Wait > 250*time.Millisecond<<(i-1) {
			t.Fatalf("failure %d: %+v", i, b)
		}
	}
	if f.failures != 3 {
		t.Fatalf("failures %d", f.failures)
	}
	waitToken(t, f)
	f.Fetch(context.Background(), time.Now().Add(time.Minute), answer(200, nil))
	if f.failures != 0 || !f.notBefore.IsZero() {
		t.Fatalf("after ok: failures %d notBefore %v", f.failures, f.notBefore)
	}
}
