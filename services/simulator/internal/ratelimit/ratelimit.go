// Package ratelimit is the token bucket a simulated provider answers 429
// from, with the numbers its rate-limit headers publish. A Bucket is safe for
// concurrent use.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Bucket admits rate requests per second with bursts of up to
// max(rate, 1) requests.
type Bucket struct {
	mu     sync.Mutex
	now    func() time.Time
	rate   float64
	tokens float64
	last   time.Time
}

// Decision is the outcome of one Take, with what the headers say.
type Decision struct {
	OK bool
	// Limit is the rate in force, requests per second.
	Limit float64
	// Remaining is the whole requests left in the bucket.
	Remaining int
	// Reset is how long until the bucket is full again.
	Reset time.Duration
	// RetryAfter is, when !OK, how long until the next request is admitted.
	RetryAfter time.Duration
}

// New returns a full bucket of rate requests per second (> 0); now is the
// clock (time.Now when nil).
func New(rate float64, now func() time.Time) *Bucket {
	if now == nil {
		now = time.Now
	}
	b := &Bucket{now: now}
	b.SetRate(rate)
	return b
}

// SetRate changes the rate and fills the bucket.
func (b *Bucket) SetRate(rate float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rate = rate
	b.tokens = b.burst()
	b.last = b.now()
}

// Rate is the rate in force.
func (b *Bucket) Rate() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rate
}

func (b *Bucket) burst() float64 { return math.Max(b.rate, 1) }

// Take spends one token if there is one. A refused request spends none.
func (b *Bucket) Take() Decision {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(b.burst(), b.tokens+el*b.rate)
	}
	b.last = now
	d := Decision{Limit: b.rate}
	if b.tokens >= 1 {
		b.tokens--
		d.OK = true
	} else {
		d.RetryAfter = seconds((1 - b.tokens) / b.rate)
	}
	d.Remaining = int(math.Floor(b.tokens))
	d.Reset = seconds((b.burst() - b.tokens) / b.rate)
	return d
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
