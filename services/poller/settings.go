package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/app"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/feed"
)

// settings is everything the poller reads from the environment.
type settings struct {
	common config.Common
	addr   string
	app    app.Config
}

// readSettings reads the environment (README "Configuration") and validates
// it, reporting every bad variable at once.
func readSettings(env *config.Env, adapters *provider.Registry) (settings, error) {
	s := settings{common: config.ReadCommon(env), addr: env.String("POLLER_ADDR", "127.0.0.1:8082")}
	// By default every provider that has both an adapter and a polling client.
	var known []string
	for _, n := range adapters.Names() {
		if slices.Contains(feed.Known(), n) {
			known = append(known, n)
		}
	}
	names := env.List("POLL_PROVIDERS", strings.Join(known, ","))
	simulator := env.String("SIMULATOR_URL", "http://127.0.0.1:8090")
	apiKey := env.String("PROVIDER_API_KEY", "sim-key")
	c := app.Config{
		Holder:           env.String("POLLER_ID", app.DefaultHolder()),
		Interval:         env.Duration("POLL_INTERVAL", 0),
		Overlap:          overlap(env.Duration("POLL_OVERLAP", 2*time.Second)),
		PageSize:         env.Int("POLL_PAGE_SIZE", 0),
		HTTPTimeout:      env.Duration("POLL_HTTP_TIMEOUT", 0),
		MaxResponseBytes: int64(env.Int("POLL_MAX_RESPONSE_BYTES", 0)),
		BackoffBase:      env.Duration("POLL_BACKOFF_BASE", 0),
		BackoffMax:       env.Duration("POLL_BACKOFF_MAX", 0),
		BreakerFailures:  env.Int("POLL_BREAKER_FAILURES", 0),
		BreakerTimeout:   env.Duration("POLL_BREAKER_TIMEOUT", 0),
		LeaseTTL:         env.Duration("POLL_LEASE_TTL", 0),
		QueueCheck:       env.Duration("POLL_QUEUE_CHECK", 0),
		KafkaDeadline:    env.Duration("POLL_KAFKA_DEADLINE", 0),
	}
	var errs []error
	for _, n := range names {
		up := config.EnvSuffix(n)
		if !slices.Contains(known, n) {
			errs = append(errs, fmt.Errorf("POLL_PROVIDERS names %q, which has no adapter or polling client (known: %s)",
				n, strings.Join(known, ", ")))
			continue
		}
		c.Providers = append(c.Providers, app.ProviderConfig{
			Name:    n,
			BaseURL: env.String("PROVIDER_URL_"+up, simulator),
			APIKey:  env.String("PROVIDER_API_KEY_"+up, apiKey),
			Rate:    env.Float("POLL_RATE_"+up, feed.PublishedLimit(n)),
		})
	}
	if err := env.Err(); err != nil {
		return s, err
	}
	if len(errs) > 0 {
		return s, errs[0]
	}
	if err := c.Validate(); err != nil {
		return s, err
	}
	s.app = c
	return s, nil
}

// overlap maps POLL_OVERLAP=0 to app.Config's "none" (a negative value).
func overlap(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// log writes the settings once at start, credentials masked.
func (s settings) log(log *zap.Logger) {
	fields := []zap.Field{
		zap.Strings("brokers", s.common.Brokers), zap.String("database", config.MaskURL(s.common.DatabaseURL)),
		zap.String("topic_namespace", s.common.TopicNamespace), zap.String("addr", s.addr),
		zap.String("holder", s.app.Holder), zap.Duration("interval", s.app.Interval), zap.Duration("overlap", s.app.Overlap),
		zap.Int("page_size", s.app.PageSize), zap.Duration("lease_ttl", s.app.LeaseTTL),
	}
	for _, p := range s.app.Providers {
		fields = append(fields, zap.Dict(p.Name, zap.String("url", config.MaskURL(p.BaseURL)),
			zap.Bool("api_key_set", p.APIKey != ""), zap.Float64("rate_per_s", p.Rate)))
	}
	log.Info("starting", fields...)
}
