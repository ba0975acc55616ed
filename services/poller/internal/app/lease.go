package app

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
)

// term is one holding of a provider's lease by this replica. validUntil is
// a local, conservative end: measured from before the renewal was sent and
// short of the TTL by a margin, so it passes before the database's
// expires_at does. No request of this term runs past it, so a replica that
// takes the lease after expires_at never overlaps with this one. Safe for
// concurrent use.
type term struct {
	mu    sync.Mutex
	until time.Time
	start time.Time
}

func (t *term) validUntil() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.until
}

func (t *term) extend(until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if until.After(t.until) {
		t.until = until
	}
}

// leaseMargin is how much of the TTL a term gives up for clock rate
// differences and the time a renewal takes to be answered.
func leaseMargin(ttl time.Duration) time.Duration { return max(ttl/5, 200*time.Millisecond) }

// errAbort marks an error that ends the poller as a crash would (a hook's).
type errAbort struct{ err error }

func (e errAbort) Error() string { return "aborted: " + e.err.Error() }
func (e errAbort) Unwrap() error { return e.err }

func isAbort(err error) bool {
	var a errAbort
	return errors.As(err, &a)
}

// runLease keeps trying to hold w's provider's lease and serves the
// provider while it does. It returns nil when ctx ends (after releasing the
// lease) or the abort error of a hook (without releasing it).
func (s *Service) runLease(ctx context.Context, w *worker) error {
	ttl := s.cfg.LeaseTTL
	renewEvery := ttl / 3
	log := s.log.With(zap.String("provider", w.name))
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return nil
		}
		sent := time.Now()
		ok, err := s.st.AcquireLease(ctx, w.name, s.cfg.Holder, ttl)
		if err != nil || !ok {
			if err != nil && ctx.Err() == nil {
				log.Warn("lease: could not reach PostgreSQL", zap.Error(err))
			}
			s.m.leaseHeld.WithLabelValues(w.name).Set(0)
			if !sleep(ctx, renewEvery) {
				return nil
			}
			continue
		}
		t := &term{until: sent.Add(ttl - leaseMargin(ttl)), start: sent}
		log.Info("lease taken: polling this provider", zap.String("holder", s.cfg.Holder), zap.Duration("ttl", ttl))
		s.m.leaseHeld.WithLabelValues(w.name).Set(1)
		tctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			s.renew(tctx, w.name, t, renewEvery, log)
		}()
		err = w.serve(tctx, t)
		cancel()
		wg.Wait()
		s.m.leaseHeld.WithLabelValues(w.name).Set(0)
		w.leaseEnded()
		if isAbort(err) {
			return err
		}
		if ctx.Err() != nil {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if err := s.st.ReleaseLease(rctx, w.name, s.cfg.Holder); err != nil {
				log.Warn("lease: release failed; another replica takes over when it expires", zap.Error(err))
			}
			rcancel()
			return nil
		}
		if err != nil {
			log.Warn("provider worker stopped; retrying", zap.Error(err))
		} else {
			log.Warn("lease lost: stopped polling this provider")
		}
		if !sleep(ctx, s.cfg.BackoffBase) {
			return nil
		}
	}
}

// renew extends t every renewEvery and returns (ending the term) when the
// lease is taken by another holder or t runs out before a renewal succeeds.
func (s *Service) renew(ctx context.Context, provider string, t *term, every time.Duration, log *zap.Logger) {
	ttl := s.cfg.LeaseTTL
	failed := false
	for {
		next := every
		if failed {
			next = every / 5
		}
		wait := min(next, time.Until(t.validUntil()))
		if wait <= 0 {
			log.Warn("lease: not renewed in time; stopping")
			return
		}
		if !sleep(ctx, wait) {
			return
		}
		if !time.Now().Before(t.validUntil()) {
			log.Warn("lease: not renewed in time; stopping")
			return
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(ctx, t.validUntil())
		ok, err := s.st.AcquireLease(rctx, provider, s.cfg.Holder, ttl)
		cancel()
		failed = err != nil
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			log.Warn("lease: renewal failed; retrying until the lease runs out", zap.Error(err))
		case !ok:
			log.Warn("lease: taken by another poller")
			return
		default:
			t.extend(sent.Add(ttl - leaseMargin(ttl)))
		}
	}
}
