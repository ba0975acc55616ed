// Package store is the poller's PostgreSQL state: provider leases, poll
// cursors, provider health, and the queued refresh and backfill jobs (tables
// of migrations 0001 and 0020).
//
// Every write a lease holder makes about a provider's progress (cursors, job
// progress, health) is fenced by the lease: it happens only while the
// writer's lease row is live in the database, by the database's clock, so a
// replica that lost its lease cannot move a cursor. Safe for concurrent use.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrLeaseLost is returned by fenced writes when the writer no longer holds
// the provider's lease.
var ErrLeaseLost = errors.New("the provider's lease is no longer held by this poller")

// Store reads and writes the poller's tables.
type Store struct{ db *pgxpool.Pool }

// New returns a store on db; the caller closes db.
func New(db *pgxpool.Pool) *Store { return &Store{db: db} }

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// fence is the condition of every fenced write: $1 provider, $2 holder.
const fence = `EXISTS (SELECT 1 FROM poller_leases WHERE provider = $1 AND holder = $2 AND expires_at > now())`

// AcquireLease takes or renews the lease of provider for holder until ttl
// from now (database time). It reports whether holder holds it afterwards:
// false when another live holder has it.
func (s *Store) AcquireLease(ctx context.Context, provider, holder string, ttl time.Duration) (bool, error) {
	tag, err := s.db.Exec(ctx, `
		INSERT INTO poller_leases (provider, holder, expires_at)
		VALUES ($1, $2, now() + make_interval(secs => $3))
		ON CONFLICT (provider) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE poller_leases.holder = excluded.holder OR poller_leases.expires_at <= now()`,
		provider, holder, ttl.Seconds())
	if err != nil {
		return false, fmt.Errorf("acquire lease of %s: %w", provider, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseLease gives the lease up if holder has it, so another replica can
// take over at once.
func (s *Store) ReleaseLease(ctx context.Context, provider, holder string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM poller_leases WHERE provider = $1 AND holder = $2`, provider, holder); err != nil {
		return fmt.Errorf("release lease of %s: %w", provider, err)
	}
	return nil
}

// LeaseHolder returns the live holder of provider's lease, or "".
func (s *Store) LeaseHolder(ctx context.Context, provider string) (string, error) {
	var h string
	err := s.db.QueryRow(ctx, `SELECT holder FROM poller_leases WHERE provider = $1 AND expires_at > now()`, provider).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return h, err
}

// Cursor returns the saved cursor of provider's stream, "" when none.
func (s *Store) Cursor(ctx context.Context, provider, stream string) (string, error) {
	var c string
	err := s.db.QueryRow(ctx, `SELECT cursor FROM poll_cursors WHERE provider = $1 AND stream = $2`, provider, stream).Scan(&c)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read cursor of %s/%s: %w", provider, stream, err)
	}
	return c, nil
}

// SaveCursor saves the cursor of provider's stream, fenced by holder's
// lease. Call it only after Kafka acknowledged every event before cursor.
func (s *Store) SaveCursor(ctx context.Context, provider, holder, stream, cursor string) error {
	tag, err := s.db.Exec(ctx, `
		INSERT INTO poll_cursors (provider, stream, cursor, updated_at)
		SELECT $1, $3, $4, now() WHERE `+fence+`
		ON CONFLICT (provider, stream) DO UPDATE SET cursor = excluded.cursor, updated_at = now()`,
		provider, holder, stream, cursor)
	if err != nil {
		return fmt.Errorf("save cursor of %s/%s: %w", provider, stream, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Health is one provider's row of provider_health.
type Health struct {
	Provider      string
	Status        string // ok, degraded, down
	LastSuccessAt time.Time
	LastAttemptAt time.Time
	LastError     string
	BreakerState  string // closed, half-open, open
}

// SaveHealth writes provider's health, fenced by holder's lease. A zero
// LastSuccessAt keeps the one saved before.
func (s *Store) SaveHealth(ctx context.Context, holder string, h Health) error {
	var success *time.Time
	if !h.LastSuccessAt.IsZero() {
		success = &h.LastSuccessAt
	}
	tag, err := s.db.Exec(ctx, `
		INSERT INTO provider_health (provider, status, last_success_at, last_attempt_at, last_error, breaker_state, updated_at)
		SELECT $1, $3, $4, $5, $6, $7, now() WHERE `+fence+`
		ON CONFLICT (provider) DO UPDATE SET status = excluded.status,
			last_success_at = coalesce(excluded.last_success_at, provider_health.last_success_at),
			last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error,
			breaker_state = excluded.breaker_state, updated_at = now()`,
		h.Provider, holder, h.Status, success, h.LastAttemptAt, h.LastError, h.BreakerState)
	if err != nil {
		return fmt.Errorf("save health of %s: %w", h.Provider, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

// LoadHealth returns provider's saved health, or false.
func (s *Store) LoadHealth(ctx context.Context, provider string) (Health, bool, error) {
	h := Health{Provider: provider}
	var success, attempt *time.Time
	err := s.db.QueryRow(ctx, `SELECT status, last_success_at, last_attempt_at, last_error, breaker_state
		FROM provider_health WHERE provider = $1`, provider).Scan(&h.Status, &success, &attempt, &h.LastError, &h.BreakerState)
	if errors.Is(err, pgx.ErrNoRows) {
		return h, false, nil
	}
	if err != nil {
		return h, false, fmt.Errorf("read health of %s: %w", provider, err)
	}
	if success != nil {
		h.LastSuccessAt = *success
	}
	if attempt != nil {
		h.LastAttemptAt = *attempt
	}
	return h, true, nil
}
