package store

import (
	"context"
	"time"
)

// BackfillJob is a row of the poller's backfill_jobs.
type BackfillJob struct {
	RequestID   string     `json:"request_id"`
	Provider    string     `json:"provider"`
	Since       *time.Time `json:"since"`
	Status      string     `json:"status"`
	Pages       int64      `json:"pages"`
	Events      int64      `json:"events"`
	Cursor      string     `json:"cursor"`
	Error       string     `json:"error"`
	RequestedBy string     `json:"requested_by"`
	RequestedAt *time.Time `json:"requested_at"`
	StartedAt   *time.Time `json:"started_at"`
	UpdatedAt   *time.Time `json:"updated_at"`
	FinishedAt  *time.Time `json:"finished_at"`
}

// BackfillJobs returns the backfill jobs of provider (all: empty), newest
// first, at most limit of them (0: all); never a nil slice. The poller
// creates the table (migration 0020): until then the error is a
// MissingTableError.
func (db *DB) BackfillJobs(ctx context.Context, provider string, limit int) ([]BackfillJob, error) {
	// The casts and to_jsonb keep it readable across the poller's versions
	// of the table.
	q := `SELECT request_id::text, provider::text, since::timestamptz, status::text,
			coalesce(pages, 0)::bigint, coalesce(events, 0)::bigint, coalesce(cursor::text, ''), coalesce(error::text, ''),
			coalesce(to_jsonb(b)->>'requested_by', ''),
			requested_at::timestamptz, started_at::timestamptz, updated_at::timestamptz, finished_at::timestamptz
		FROM backfill_jobs b WHERE ($1 = '' OR provider = $1)
		ORDER BY requested_at DESC NULLS LAST, request_id`
	args := []any{provider}
	if limit > 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	jobs := []BackfillJob{}
	rows, err := db.pool.Query(ctx, q, args...)
	if err == nil {
		for rows.Next() {
			var j BackfillJob
			if err = rows.Scan(&j.RequestID, &j.Provider, &j.Since, &j.Status, &j.Pages, &j.Events, &j.Cursor, &j.Error,
				&j.RequestedBy, &j.RequestedAt, &j.StartedAt, &j.UpdatedAt, &j.FinishedAt); err != nil {
				break
			}
			jobs = append(jobs, j)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if mt := missingTable(err, "backfill_jobs", "0020"); mt != nil {
		return jobs, mt
	}
	return jobs, err
}
