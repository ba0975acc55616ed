// Package app is the poller: per provider, a worker that holds the
// provider's lease in PostgreSQL and syncs its polling API (live change
// feed, refresh requests, backfills, in that priority) within a token-bucket
// budget, with backoff and a circuit breaker; and a consumer of
// reviews.sync-requests.v1 that queues refresh and backfill jobs.
//
// A worker (worker.go) only schedules: it picks the stream that sends next
// (schedule.go) and runs one step of it (stream.go) when its fetcher
// (internal/fetch: budget, breaker, backoff) allows. Each stream holds its
// own position and completion: live sync (live.go), a refresh (refresh.go),
// a backfill (backfill.go). Pages go to Kafka through the publisher
// (publish.go); health (health.go) and the lease (lease.go) are the
// worker's.
//
// Every change read from a provider is published to reviews.raw.v1 as a raw
// envelope whose payload is the provider's event bytes untouched; a cursor
// or job progress is saved only after Kafka acknowledged the events before
// it, so a crash re-reads and never skips.
package app

import (
	"context"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/feed"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/store"
)

// Service is the poller. Run and ConsumeRequests may run at once.
type Service struct {
	cfg     Config
	st      *store.Store
	raw     Writer
	dlq     Writer
	log     *zap.Logger
	m       *metrics
	workers map[string]*worker
}

// New checks cfg and returns a poller publishing to raw and dlq, keeping its
// state in st.
func New(cfg Config, adapters *provider.Registry, st *store.Store, raw, dlq Writer, log *zap.Logger,
	reg prometheus.Registerer) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, st: st, raw: raw, dlq: dlq, log: log, m: newMetrics(reg), workers: map[string]*worker{}}
	for _, pc := range cfg.Providers {
		a, ok := adapters.Get(pc.Name)
		if !ok {
			return nil, fmt.Errorf("POLL_PROVIDERS: provider %q has no adapter (known: %v)", pc.Name, adapters.Names())
		}
		c, err := feed.NewClient(feed.ClientConfig{
			BaseURL:   pc.BaseURL,
			APIKey:    pc.APIKey,
			Timeout:   cfg.HTTPTimeout,
			MaxBytes:  cfg.MaxResponseBytes,
			UserAgent: "reviewpipe-poller/" + cfg.Holder,
		})
		if err != nil {
			return nil, fmt.Errorf("PROVIDER_URL_%s: %w", config.EnvSuffix(pc.Name), err)
		}
		f, err := feed.New(pc.Name, c)
		if err != nil {
			return nil, fmt.Errorf("POLL_PROVIDERS: %w", err)
		}
		s.workers[pc.Name] = s.newWorker(pc, f, a)
	}
	return s, nil
}

// DefaultHolder is a replica name unique enough for POLLER_ID's default.
func DefaultHolder() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "poller"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

// Run syncs every configured provider while it holds the provider's lease,
// until ctx ends; then it releases its leases and returns nil. A hook's
// error (Config.Hooks) ends it at once with that error.
func (s *Service) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, name := range s.providerNames() {
		w := s.workers[name]
		g.Go(func() error { return s.runLease(gctx, w) })
	}
	return g.Wait()
}

func (s *Service) providerNames() []string {
	out := make([]string, 0, len(s.workers))
	for n := range s.workers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// notify tells the worker a job was queued for it, so an idle worker looks
// at once instead of at its next queue check.
func (w *worker) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}
