// Package retry computes exponential backoff with full jitter and runs
// operations under it. Safe for concurrent use.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff returns a random delay in [0, min(ceiling, base*2^attempt)): full
// jitter, so that many clients retrying at once spread out.
func Backoff(attempt int, base, ceiling time.Duration) time.Duration {
	if attempt > 30 {
		attempt = 30
	}
	d := base << attempt
	if d <= 0 || d > ceiling {
		d = ceiling
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// Do runs op until it returns nil, permanent(err) is true, attempts run out
// (0 means no limit) or ctx ends; it sleeps Backoff between tries and
// returns the last error.
func Do(ctx context.Context, attempts int, base, ceiling time.Duration, permanent func(error) bool, op func(context.Context) error) error {
	var err error
	for i := 0; attempts == 0 || i < attempts; i++ {
		if err = op(ctx); err == nil || (permanent != nil && permanent(err)) {
			return err
		}
		t := time.NewTimer(Backoff(i, base, ceiling))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
	return err
}
