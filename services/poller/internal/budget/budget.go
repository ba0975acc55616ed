// Package budget is the poller's request budget for one provider: a token
// bucket seeded from the provider's published rate limit and kept in step
// with what the provider says in its X-RateLimit-* headers and Retry-After.
//
// Every method takes the current time, so the arithmetic is tested without a
// clock. A Bucket is safe for concurrent use.
package budget

import (
	"math"
	"sync"
	"time"
)

// Bucket admits requests at Rate per second with bursts of up to Burst.
//
// The provider's own bucket is the authority: Observe lowers the local
// tokens to the provider's X-RateLimit-Remaining and follows a lower
// X-RateLimit-Limit, and Pause holds every request back until a Retry-After
// has passed. The local rate never rises above the configured one.
type Bucket struct {
	mu sync.Mutex
	// configured is the rate the operator allows (POLL_RATE_<PROVIDER>).
	configured float64
	// published is the provider's latest X-RateLimit-Limit (0: not seen).
	published float64
	// headroom is the fraction of published kept unused (SetHeadroom).
	headroom  float64
	rate      float64
	burst     float64
	tokens    float64
	last      time.Time
	paused    time.Time
	remaining int // the provider's latest X-RateLimit-Remaining, -1 unknown
}

// New returns a full bucket of rate requests per second (> 0) and bursts of
// burst requests (at least 1).
func New(rate, burst float64, now time.Time) *Bucket {
	if burst < 1 {
		burst = 1
	}
	return &Bucket{configured: rate, rate: rate, burst: burst, tokens: burst, last: now, remaining: -1}
}

func (b *Bucket) refill(now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(b.burst, b.tokens+el*b.rate)
		b.last = now
	}
}

// Delay returns how long from now until a request may be sent: 0 when a
// token is there and no pause is in force.
func (b *Bucket) Delay(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	// During a pause b.last is its end: tokens refill from there.
	ready := now
	if b.last.After(ready) {
		ready = b.last
	}
	if b.paused.After(ready) {
		ready = b.paused
	}
	if b.tokens < 1 {
		ready = ready.Add(max(time.Nanosecond, time.Duration((1-b.tokens)/b.rate*float64(time.Second))))
	}
	return ready.Sub(now)
}

// Take spends one token and reports true when Delay(now) is 0; otherwise
// it spends nothing and reports false.
func (b *Bucket) Take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens < 1 || now.Before(b.paused) {
		return false
	}
	b.tokens--
	return true
}

// Headers is what one answer said about the provider's budget; a nil field
// was absent or unreadable.
type Headers struct {
	Limit     *float64 // X-RateLimit-Limit, requests per second
	Remaining *int     // X-RateLimit-Remaining, whole requests left
	Reset     *int     // X-RateLimit-Reset, seconds until the provider's bucket is full
	// RetryAfter is Retry-After (on 429 and 503), as a duration.
	RetryAfter *time.Duration
}

// Observe brings the bucket in step with an answer's headers, received at
// now:
//   - Limit: the rate becomes min(configured rate, Limit), so a provider
//     that lowers its limit is followed at once and one that raises it is
//     not followed past what the operator configured;
//   - Remaining: the local tokens drop to it when it is lower (the provider
//     counted requests the poller did not see: another client, a restart);
//     a higher value is not trusted, the local bucket stays conservative;
//   - Reset needs no action: the provider refills at Limit, as the local
//     bucket then does, so an emptied bucket is in step with the provider's.
//
// Retry-After is not handled here; see Pause.
func (b *Bucket) Observe(now time.Time, h Headers) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h.Limit != nil && *h.Limit > 0 && !math.IsInf(*h.Limit, 0) {
		// The provider's rate applied since the last refill too: refill
		// at the new rate, so a lower limit never leaves extra tokens.
		b.published = *h.Limit
		b.rate = math.Min(b.configured, b.published*(1-b.headroom))
	}
	b.refill(now)
	if h.Remaining != nil && *h.Remaining >= 0 {
		b.remaining = *h.Remaining
		if r := float64(*h.Remaining); r < b.tokens {
			b.tokens = r
		}
	}
}

// Pause holds every request back until now+d (a Retry-After) and empties
// the bucket, so the first request after it is the only one.
func (b *Bucket) Pause(now time.Time, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if until := now.Add(d); until.After(b.paused) {
		b.paused = until
	}
	b.tokens = 0
	// Tokens start refilling when the pause ends, not before it.
	if b.paused.After(b.last) {
		b.last = b.paused
	}
}

// SetHeadroom keeps a fraction (0 to 0.5) of the provider's published limit
// unused. The provider counts requests as they arrive, and arrivals jitter:
// paced exactly at a limit of 5/s, six requests 200 ms apart can land in
// one second of the provider's clock. It applies from the next Observe.
func (b *Bucket) SetHeadroom(fraction float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.headroom = math.Max(0, math.Min(0.5, fraction))
}

// Snapshot is the bucket's state for metrics.
type Snapshot struct {
	Rate      float64 // requests per second in force
	Published float64 // the provider's latest X-RateLimit-Limit, 0 unseen
	Tokens    float64 // local tokens now
	Remaining int     // the provider's latest X-RateLimit-Remaining, -1 unseen
	PausedFor time.Duration
}

// Snapshot returns the bucket's state at now.
func (b *Bucket) Snapshot(now time.Time) Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	s := Snapshot{Rate: b.rate, Published: b.published, Tokens: b.tokens, Remaining: b.remaining}
	if now.Before(b.paused) {
		s.PausedFor = b.paused.Sub(now)
	}
	return s
}
