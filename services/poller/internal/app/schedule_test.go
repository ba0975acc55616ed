package app

import (
	"strings"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

func TestChoosePriorities(t *testing.T) {
	for _, tc := range []struct {
		p    pending
		want Stream
	}{
		{pending{}, ""},
		{pending{backfill: true}, StreamBackfill},
		{pending{refresh: true, backfill: true}, StreamRefresh},
		{pending{live: true, refresh: true, backfill: true}, StreamLive},
		{pending{live: true, backfill: true}, StreamLive},
		{pending{live: true}, StreamLive},
		{pending{refresh: true}, StreamRefresh},
	} {
		if got := choose(tc.p); got != tc.want {
			t.Errorf("choose(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}

// A simulated worker: one request per token at 10/s, a live pass of 3
// pages due every second, a refresh of 2 pages queued at 0.35s, and a
// backfill of 1000 pages. Live and refresh pages go out as soon as they
// are due; the backfill only gets the tokens left over.
func TestBackfillOnlyUsesLeftoverBudget(t *testing.T) {
	const rate = 10
	var (
		liveLeft, refreshLeft, backfillDone int
		nextLive                            = 0.0
		refreshAt                           = 0.35
		liveDelays                          []float64
		liveDueAt                           float64
		refreshFinished                     float64
	)
	for i := 0; i < 10*rate; i++ { // 10 simulated seconds, one token each 100ms
		now := float64(i) / rate
		if now >= nextLive && liveLeft == 0 {
			liveLeft, liveDueAt, nextLive = 3, now, nextLive+1
		}
		if refreshAt >= 0 && now >= refreshAt {
			refreshLeft, refreshAt = 2, -1
		}
		switch choose(pending{live: liveLeft > 0, refresh: refreshLeft > 0, backfill: true}) {
		case StreamLive:
			liveLeft--
			if liveLeft == 0 {
				liveDelays = append(liveDelays, now-liveDueAt)
			}
		case StreamRefresh:
			refreshLeft--
			if refreshLeft == 0 {
				refreshFinished = now
			}
		case StreamBackfill:
			backfillDone++
		}
	}
	for _, d := range liveDelays {
		if d > 0.2+1e-9 { // 3 pages at 10/s: the pass ends 0.2s after it is due
			t.Fatalf("a live pass took %.2fs: it waited behind the backfill", d)
		}
	}
	if refreshFinished > 0.5+1e-9 {
		t.Fatalf("refresh finished at %.2fs, want by 0.5s (2 pages from 0.4s)", refreshFinished)
	}
	// 100 tokens: 30 live, 2 refresh, the rest backfill.
	if backfillDone != 100-30-2 {
		t.Fatalf("backfill got %d tokens, want the 68 left over", backfillDone)
	}
}

func TestHealthStatus(t *testing.T) {
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	stale := 30 * time.Second
	for _, tc := range []struct {
		name        string
		breaker     gobreaker.State
		failing     bool
		unavailable bool
		success     time.Time
		since       time.Time
		want        string
	}{
		{"breaker open is down", gobreaker.StateOpen, false, false, now, now, HealthDown},
		{"the provider answered 503", gobreaker.StateClosed, true, true, now.Add(-time.Second), now.Add(-time.Minute), HealthDown},
		{"last attempt failed", gobreaker.StateClosed, true, false, now.Add(-time.Second), now.Add(-time.Minute), HealthDegraded},
		{"half-open and failing", gobreaker.StateHalfOpen, true, false, time.Time{}, now.Add(-time.Minute), HealthDegraded},
		{"recent success", gobreaker.StateClosed, false, false, now.Add(-5 * time.Second), now.Add(-time.Hour), HealthOK},
		{"no success for too long (429 storm)", gobreaker.StateClosed, false, false, now.Add(-time.Minute), now.Add(-time.Hour), HealthDegraded},
		{"just took the lease", gobreaker.StateClosed, false, false, now.Add(-time.Hour), now.Add(-time.Second), HealthOK},
	} {
		if got := healthStatus(tc.breaker, tc.failing, tc.unavailable, tc.success, tc.since, now, stale); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		return Config{Holder: "h", Providers: []ProviderConfig{{Name: "generic", BaseURL: "http://127.0.0.1:8090", APIKey: "k", Rate: 20}}}
	}
	c := good()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Interval != 10*time.Second || c.LeaseTTL != 15*time.Second || c.PageSize != 100 || c.BreakerFailures != 6 {
		t.Fatalf("defaults: %+v", c)
	}
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Interval = time.Millisecond }, "POLL_INTERVAL"},
		{func(c *Config) { c.PageSize = 501 }, "POLL_PAGE_SIZE"},
		{func(c *Config) { c.Providers[0].BaseURL = "ftp://x" }, "PROVIDER_URL_GENERIC"},
		{func(c *Config) { c.Providers[0].APIKey = "" }, "PROVIDER_API_KEY_GENERIC"},
		{func(c *Config) { c.Providers[0].Rate = 0 }, "POLL_RATE_GENERIC"},
		{func(c *Config) { c.Providers = append(c.Providers, c.Providers[0]) }, "twice"},
		{func(c *Config) { c.Providers = nil }, "POLL_PROVIDERS"},
		{func(c *Config) { c.LeaseTTL, c.HTTPTimeout = 2*time.Second, 10*time.Second }, "POLL_LEASE_TTL"},
		{func(c *Config) { c.BackoffBase, c.BackoffMax = time.Second, time.Millisecond }, "POLL_BACKOFF_BASE"},
	} {
		c := good()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %s, got %v", tc.want, err)
		}
	}
}
