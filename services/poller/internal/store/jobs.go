package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Job statuses of backfill_jobs and refresh_jobs.
const (
	StatusQueued  = "queued"
	StatusRunning = "running"
	StatusDone    = "done"
	StatusFailed  = "failed"
)

// Backfill is a row of backfill_jobs.
type Backfill struct {
	RequestID   string
	Provider    string
	Since       time.Time // zero: the feed's beginning
	Status      string
	Pages       int64
	Events      int64
	Cursor      string
	Error       string
	RequestedAt time.Time
	RequestedBy string
	StartedAt   time.Time
}

// QueueBackfill records a backfill request. A request id seen before is left
// as it is (a redelivered request has no second effect); it reports whether
// the row is new. A request that is invalid from the start is recorded with
// status failed and failure as its error, so the operator sees why.
func (s *Store) QueueBackfill(ctx context.Context, b Backfill, failure string) (bool, error) {
	var since *time.Time
	if !b.Since.IsZero() {
		since = &b.Since
	}
	status, errText, finished := StatusQueued, (*string)(nil), (*time.Time)(nil)
	if failure != "" {
		now := time.Now()
		status, errText, finished = StatusFailed, &failure, &now
	}
	tag, err := s.db.Exec(ctx, `
		INSERT INTO backfill_jobs (request_id, provider, since, status, error, requested_at, requested_by, finished_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (request_id) DO NOTHING`,
		b.RequestID, b.Provider, since, status, errText, b.RequestedAt, b.RequestedBy, finished)
	if err != nil {
		return false, fmt.Errorf("queue backfill %s: %w", b.RequestID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// NextBackfill returns provider's oldest unfinished backfill (a running one
// first, so a job taken over from a lost lease resumes), or nil.
func (s *Store) NextBackfill(ctx context.Context, provider string) (*Backfill, error) {
	b, err := s.queryBackfill(ctx, `provider = $1 AND status IN ('queued', 'running')
		ORDER BY status = 'running' DESC, requested_at, request_id LIMIT 1`, provider)
	if err != nil {
		return nil, fmt.Errorf("next backfill of %s: %w", provider, err)
	}
	return b, nil
}

// backfillColumns are read by queryBackfill in this order.
const backfillColumns = `request_id, provider, since, status, pages, events, cursor, error, requested_at, requested_by, started_at`

// queryBackfill reads the first backfill_jobs row matching where (with its
// ORDER BY and LIMIT), or nil when none does.
func (s *Store) queryBackfill(ctx context.Context, where string, args ...any) (*Backfill, error) {
	b := &Backfill{}
	var since, started *time.Time
	var cursor, errText *string
	err := s.db.QueryRow(ctx, `SELECT `+backfillColumns+` FROM backfill_jobs WHERE `+where, args...).Scan(
		&b.RequestID, &b.Provider, &since, &b.Status, &b.Pages, &b.Events, &cursor, &errText, &b.RequestedAt, &b.RequestedBy, &started)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if since != nil {
		b.Since = *since
	}
	if started != nil {
		b.StartedAt = *started
	}
	if cursor != nil {
		b.Cursor = *cursor
	}
	if errText != nil {
		b.Error = *errText
	}
	return b, nil
}

// StartBackfill marks a job running (keeping the first start time), fenced
// by holder's lease of the job's provider.
func (s *Store) StartBackfill(ctx context.Context, holder string, b *Backfill) error {
	var started time.Time
	err := s.db.QueryRow(ctx, `
		UPDATE backfill_jobs SET status = 'running', started_at = coalesce(started_at, now()), updated_at = now()
		WHERE request_id = $3 AND status IN ('queued', 'running') AND `+fence+` RETURNING started_at`,
		b.Provider, holder, b.RequestID).Scan(&started)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("start backfill %s: %w", b.RequestID, err)
	}
	b.Status, b.StartedAt = StatusRunning, started
	return nil
}

// BackfillPage records one page of a running job: its cursor (after Kafka
// acknowledged the page's events) and counts, fenced by the lease.
func (s *Store) BackfillPage(ctx context.Context, holder string, b *Backfill, cursor string, events int) error {
	tag, err := s.db.Exec(ctx, `
		UPDATE backfill_jobs SET cursor = $4, pages = pages + 1, events = events + $5, updated_at = now()
		WHERE request_id = $3 AND status = 'running' AND `+fence,
		b.Provider, holder, b.RequestID, cursor, events)
	if err != nil {
		return fmt.Errorf("record backfill page of %s: %w", b.RequestID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	b.Cursor, b.Pages, b.Events = cursor, b.Pages+1, b.Events+int64(events)
	return nil
}

// FinishBackfill marks a job done or failed (with failure), fenced by the lease.
func (s *Store) FinishBackfill(ctx context.Context, holder string, b *Backfill, status, failure string) error {
	var errText *string
	if failure != "" {
		errText = &failure
	}
	tag, err := s.db.Exec(ctx, `
		UPDATE backfill_jobs SET status = $4, error = $5, finished_at = now(), updated_at = now()
		WHERE request_id = $3 AND status IN ('queued', 'running') AND `+fence,
		b.Provider, holder, b.RequestID, status, errText)
	if err != nil {
		return fmt.Errorf("finish backfill %s: %w", b.RequestID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	b.Status = status
	return nil
}

// GetBackfill returns a job by request id, or nil.
func (s *Store) GetBackfill(ctx context.Context, requestID string) (*Backfill, error) {
	b, err := s.queryBackfill(ctx, `request_id = $1`, requestID)
	if err != nil {
		return nil, fmt.Errorf("read backfill %s: %w", requestID, err)
	}
	return b, nil
}

// JobCounts returns provider's unfinished jobs by kind and status.
type JobCounts struct {
	BackfillQueued, BackfillRunning, RefreshQueued int
}

// CountJobs counts provider's queued and running jobs.
func (s *Store) CountJobs(ctx context.Context, provider string) (JobCounts, error) {
	var c JobCounts
	err := s.db.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM backfill_jobs WHERE provider = $1 AND status = 'queued'),
		(SELECT count(*) FROM backfill_jobs WHERE provider = $1 AND status = 'running'),
		(SELECT count(*) FROM refresh_jobs WHERE provider = $1 AND status IN ('queued', 'running'))`, provider).Scan(
		&c.BackfillQueued, &c.BackfillRunning, &c.RefreshQueued)
	if err != nil {
		return c, fmt.Errorf("count jobs of %s: %w", provider, err)
	}
	return c, nil
}

// Refresh is a refresh of one movie at one provider.
type Refresh struct {
	RequestID   string
	Provider    string
	MovieID     string
	RequestedAt time.Time
}

// QueueRefresh records a refresh request for one provider; a repeat of the
// same request id is ignored. It reports whether the row is new.
func (s *Store) QueueRefresh(ctx context.Context, r Refresh) (bool, error) {
	tag, err := s.db.Exec(ctx, `
		INSERT INTO refresh_jobs (request_id, provider, movie_id, requested_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (request_id, provider) DO NOTHING`, r.RequestID, r.Provider, r.MovieID, r.RequestedAt)
	if err != nil {
		return false, fmt.Errorf("queue refresh %s: %w", r.RequestID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// NextRefresh returns provider's oldest unfinished refresh, or nil.
func (s *Store) NextRefresh(ctx context.Context, provider string) (*Refresh, error) {
	r := &Refresh{}
	err := s.db.QueryRow(ctx, `
		SELECT request_id, provider, movie_id, requested_at FROM refresh_jobs
		WHERE provider = $1 AND status IN ('queued', 'running') ORDER BY requested_at, request_id LIMIT 1`, provider).Scan(
		&r.RequestID, &r.Provider, &r.MovieID, &r.RequestedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("next refresh of %s: %w", provider, err)
	}
	return r, nil
}

// StartRefresh marks every unfinished refresh of (provider, movie) running
// and returns the database time it started: FinishRefresh closes the rows
// started up to then, all of which this one refresh serves (repeats of one
// movie collapse into one provider read).
func (s *Store) StartRefresh(ctx context.Context, holder string, r *Refresh) (time.Time, error) {
	var started time.Time
	err := s.db.QueryRow(ctx, `
		WITH upd AS (
			UPDATE refresh_jobs SET status = 'running', started_at = coalesce(started_at, now()), updated_at = now()
			WHERE provider = $1 AND movie_id = $3 AND status IN ('queued', 'running') AND `+fence+`
			RETURNING 1)
		SELECT now() FROM upd LIMIT 1`, r.Provider, holder, r.MovieID).Scan(&started)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, ErrLeaseLost
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("start refresh of %s: %w", r.MovieID, err)
	}
	return started, nil
}

// FinishRefresh closes the running refreshes of (provider, movie) started up
// to startedAt with status, counts and failure, fenced by the lease. It
// returns how many requests the refresh served.
func (s *Store) FinishRefresh(ctx context.Context, holder string, r *Refresh, startedAt time.Time, status string,
	pages, events int, failure string) (int, error) {
	var errText *string
	if failure != "" {
		errText = &failure
	}
	tag, err := s.db.Exec(ctx, `
		UPDATE refresh_jobs SET status = $5, pages = $6, events = $7, error = $8, finished_at = now(), updated_at = now()
		WHERE provider = $1 AND movie_id = $3 AND status = 'running' AND started_at <= $4 AND `+fence,
		r.Provider, holder, r.MovieID, startedAt, status, pages, events, errText)
	if err != nil {
		return 0, fmt.Errorf("finish refresh of %s: %w", r.MovieID, err)
	}
	if tag.RowsAffected() == 0 {
		return 0, ErrLeaseLost
	}
	return int(tag.RowsAffected()), nil
}
