package app

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/config"
)

// ProviderConfig is one provider the poller syncs.
type ProviderConfig struct {
	Name string
	// BaseURL is the provider API's root (PROVIDER_URL_<PROVIDER>).
	BaseURL string
	// APIKey is the bearer key (PROVIDER_API_KEY_<PROVIDER>); never logged.
	APIKey string
	// Rate is the most requests per second the poller sends
	// (POLL_RATE_<PROVIDER>, default the provider's published limit).
	Rate float64
}

// Config configures the poller. Zero values take the defaults noted.
type Config struct {
	Providers []ProviderConfig
	// Holder names this replica in poller_leases (POLLER_ID).
	Holder string
	// Interval is the live sync cadence per provider (POLL_INTERVAL, 10s).
	Interval time.Duration
	// Overlap rewinds a time cursor at the start of every live pass, so a
	// change the provider recorded late is still read (POLL_OVERLAP, 2s;
	// negative: no overlap).
	Overlap time.Duration
	// PageSize is asked of every feed (POLL_PAGE_SIZE, 100).
	PageSize int
	// HTTPTimeout bounds one provider request (POLL_HTTP_TIMEOUT, 10s).
	HTTPTimeout time.Duration
	// MaxResponseBytes caps one answer's body (POLL_MAX_RESPONSE_BYTES, 16 MiB).
	MaxResponseBytes int64
	// BackoffBase and BackoffMax shape the exponential backoff with full
	// jitter after failures (POLL_BACKOFF_BASE 250ms, POLL_BACKOFF_MAX 30s).
	BackoffBase, BackoffMax time.Duration
	// BreakerFailures consecutive provider faults open the breaker
	// (POLL_BREAKER_FAILURES, 6); BreakerTimeout later it lets one probe
	// through (POLL_BREAKER_TIMEOUT, 15s).
	BreakerFailures int
	BreakerTimeout  time.Duration
	// LeaseTTL is how long a provider lease lasts unless renewed
	// (POLL_LEASE_TTL, 15s); it is renewed every third of it.
	LeaseTTL time.Duration
	// QueueCheck is how often an idle provider worker looks for queued
	// refresh and backfill jobs (POLL_QUEUE_CHECK, 1s).
	QueueCheck time.Duration
	// KafkaDeadline bounds one page's write to Kafka (POLL_KAFKA_DEADLINE, 10s).
	KafkaDeadline time.Duration
	// Hooks are fault-injection points for tests; nil in production.
	Hooks Hooks
}

// Hooks lets tests stop the poller at chosen points. An error from a hook
// ends Run at once with that error, as if the process had been killed:
// nothing after the hook point happens and no lease is released.
type Hooks struct {
	// BeforeCursorSave runs after a page's events were acknowledged by
	// Kafka and before the cursor (or job progress) that covers them is
	// saved.
	BeforeCursorSave func(provider, stream string) error
}

// Validate fills defaults and checks the config; its errors name the
// variable to fix.
func (c *Config) Validate() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Interval, 10*time.Second)
	def(&c.Overlap, 2*time.Second)
	def(&c.HTTPTimeout, 10*time.Second)
	def(&c.BackoffBase, 250*time.Millisecond)
	def(&c.BackoffMax, 30*time.Second)
	def(&c.BreakerTimeout, 15*time.Second)
	def(&c.LeaseTTL, 15*time.Second)
	def(&c.QueueCheck, time.Second)
	def(&c.KafkaDeadline, 10*time.Second)
	if c.Overlap < 0 {
		c.Overlap = 0
	}
	if c.PageSize == 0 {
		c.PageSize = 100
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = 16 << 20
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 6
	}
	switch {
	case c.Holder == "":
		return fmt.Errorf("POLLER_ID must not be empty")
	case c.Interval < 100*time.Millisecond:
		return fmt.Errorf("POLL_INTERVAL must be at least 100ms, got %s", c.Interval)
	case c.PageSize < 1 || c.PageSize > 500:
		return fmt.Errorf("POLL_PAGE_SIZE must be 1 to 500, got %d", c.PageSize)
	case c.HTTPTimeout < 100*time.Millisecond:
		return fmt.Errorf("POLL_HTTP_TIMEOUT must be at least 100ms, got %s", c.HTTPTimeout)
	case c.MaxResponseBytes < 64<<10:
		return fmt.Errorf("POLL_MAX_RESPONSE_BYTES must be at least 65536, got %d", c.MaxResponseBytes)
	case c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase:
		return fmt.Errorf("POLL_BACKOFF_BASE (%s) must be positive and at most POLL_BACKOFF_MAX (%s)", c.BackoffBase, c.BackoffMax)
	case c.BreakerFailures < 1:
		return fmt.Errorf("POLL_BREAKER_FAILURES must be at least 1, got %d", c.BreakerFailures)
	case c.BreakerTimeout < 100*time.Millisecond:
		return fmt.Errorf("POLL_BREAKER_TIMEOUT must be at least 100ms, got %s", c.BreakerTimeout)
	case c.LeaseTTL < time.Second:
		return fmt.Errorf("POLL_LEASE_TTL must be at least 1s, got %s", c.LeaseTTL)
	case c.LeaseTTL <= c.HTTPTimeout/2:
		// A request may run until the lease's end; a lease much shorter
		// than a request would cut most slow requests off.
		return fmt.Errorf("POLL_LEASE_TTL (%s) must be more than half of POLL_HTTP_TIMEOUT (%s)", c.LeaseTTL, c.HTTPTimeout)
	case c.QueueCheck < 10*time.Millisecond:
		return fmt.Errorf("POLL_QUEUE_CHECK must be at least 10ms, got %s", c.QueueCheck)
	case len(c.Providers) == 0:
		return fmt.Errorf("POLL_PROVIDERS names no provider")
	}
	seen := map[string]bool{}
	for _, p := range c.Providers {
		up := config.EnvSuffix(p.Name)
		if seen[p.Name] {
			return fmt.Errorf("POLL_PROVIDERS names %s twice", p.Name)
		}
		seen[p.Name] = true
		u, err := url.Parse(p.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("PROVIDER_URL_%s (or SIMULATOR_URL) must be an absolute http(s) URL, got %q", up, p.BaseURL)
		}
		if p.APIKey == "" {
			return fmt.Errorf("PROVIDER_API_KEY_%s must not be empty", up)
		}
		if !(p.Rate > 0) || p.Rate > 10000 {
			return fmt.Errorf("POLL_RATE_%s must be a number of requests per second above 0 (at most 10000), got %v", up, p.Rate)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
