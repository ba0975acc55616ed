package app

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/services/poller/internal/store"
)

// healthState is what the worker knows of its provider's health, saved to
// provider_health by saveHealth.
type healthState struct {
	lastSuccess time.Time
	lastAttempt time.Time
	lastError   string
	failing     bool
	unavailable bool // the latest failure was a 503
	saved       store.Health
	savedAt     time.Time
}

// failed records a failed step; unavailable says the provider answered 503.
func (h *healthState) failed(now time.Time, err error, unavailable bool) {
	h.failing, h.unavailable = true, unavailable
	h.lastAttempt, h.lastError = now, errText(err)
}

// succeeded records a page fetched, published and recorded.
func (h *healthState) succeeded(now time.Time) {
	h.lastSuccess, h.lastAttempt = now, now
	h.failing, h.unavailable, h.lastError = false, false, ""
}

// saveHealth writes provider_health when the status or breaker state
// changed, or at most once a second while something else changed.
func (w *worker) saveHealth(ctx context.Context, now time.Time) {
	if w.term == nil {
		return
	}
	state := w.fetcher.BreakerState()
	h := store.Health{
		Provider: w.name,
		Status: healthStatus(state, w.health.failing, w.health.unavailable, w.health.lastSuccess, w.term.start, now,
			max(3*w.s.cfg.Interval, 30*time.Second)),
		LastSuccessAt: w.health.lastSuccess,
		LastAttemptAt: w.health.lastAttempt,
		LastError:     w.health.lastError,
		BreakerState:  state.String(),
	}
	if h.LastAttemptAt.IsZero() {
		return // nothing to say yet
	}
	prev := w.health.saved
	changed := h.Status != prev.Status || h.BreakerState != prev.BreakerState
	if !changed && (h == prev || now.Sub(w.health.savedAt) < time.Second) {
		return
	}
	if err := w.s.st.SaveHealth(ctx, w.s.cfg.Holder, h); err != nil {
		if !errors.Is(err, store.ErrLeaseLost) && ctx.Err() == nil {
			w.log.Warn("could not save provider health", zap.Error(err))
		}
		return
	}
	if changed {
		w.log.Info("provider health", zap.String("status", h.Status), zap.String("breaker", h.BreakerState),
			zap.String("last_error", h.LastError))
	}
	w.health.saved, w.health.savedAt = h, now
}

// errText is an error's text for provider_health.last_error, cut to 500
// bytes; "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}

// Health statuses of provider_health.
const (
	HealthOK       = "ok"
	HealthDegraded = "degraded"
	HealthDown     = "down"
)

// healthStatus says how a provider's sync stands: down while its breaker is
// open or its latest answer was 503 (the provider says it is unavailable);
// degraded while its latest attempt failed otherwise, or nothing has
// succeeded for staleAfter (a 429 storm, a half-open breaker that keeps
// failing); ok otherwise. since is when the worker started trying (its
// lease term), the reference when nothing has succeeded yet.
func healthStatus(breaker gobreaker.State, failing, unavailable bool, lastSuccess, since, now time.Time, staleAfter time.Duration) string {
	switch {
	case breaker == gobreaker.StateOpen, failing && unavailable:
		return HealthDown
	case failing:
		return HealthDegraded
	}
	ref := lastSuccess
	if ref.Before(since) {
		ref = since
	}
	if now.Sub(ref) > staleAfter {
		return HealthDegraded
	}
	return HealthOK
}
