package kafkax

import (
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/retry"
)

// Backoff is retry.Backoff, kept here so callers of this package need one import.
func Backoff(attempt int, base, ceiling time.Duration) time.Duration {
	return retry.Backoff(attempt, base, ceiling)
}
