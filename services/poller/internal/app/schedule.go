package app

import (
	"time"

	"github.com/sony/gobreaker/v2"
)

// Stream is one kind of work a provider worker does, in priority order.
type Stream string

// The streams: live sync of the change feed, refresh of one movie on
// request, backfill of history. Also the value of poll_cursors.stream.
const (
	StreamLive     Stream = "live"
	StreamRefresh  Stream = "refresh"
	StreamBackfill Stream = "backfill"
)

// pending is what a provider worker could do next.
type pending struct {
	// live is true when a live pass is due or under way.
	live bool
	// refresh and backfill are true when such a job is queued or running.
	refresh, backfill bool
}

// choose picks the stream that gets the next request: live sync first,
// then refreshes, then backfill, which so only ever spends the budget the
// other two leave. "" when there is nothing to do.
//
// A worker sends one request at a time and calls choose again once the
// budget has a token for it, so a live pass that falls due while a
// backfill runs waits for at most one request, never for the backfill.
func choose(p pending) Stream {
	switch {
	case p.live:
		return StreamLive
	case p.refresh:
		return StreamRefresh
	case p.backfill:
		return StreamBackfill
	}
	return ""
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
