// Package store is the read API's PostgreSQL adapter: the queries behind
// every answer, the refresh-request collapse, and the listener of the
// sink's change notifications. It never writes a review.
//
// A Store is safe for concurrent use.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reviewpipe/reviewpipe/pkg/pgoffsets"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// ErrNotFound is returned for a review that does not exist or is deleted.
var ErrNotFound = errors.New("not found")

// Store reads the serving store.
type Store struct {
	db *pgxpool.Pool
}

// New returns a store on db.
func New(db *pgxpool.Pool) *Store { return &Store{db: db} }

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// Cursor is a position in a movie's review list: the last row of a page.
type Cursor struct {
	SourceUpdatedAt time.Time
	ID              string
}

// Row is a stored review, with whether it is a tombstone.
type Row struct {
	review.Review
	Deleted bool
}

const reviewColumns = `id, provider, external_id, COALESCE(movie_id, ''), author, rating, title, body, language, url,
	version, source_updated_at, ingested_at, deleted`

func scanRow(row pgx.Row) (Row, error) {
	var r Row
	var rating *int16
	err := row.Scan(&r.ID, &r.Provider, &r.ExternalID, &r.MovieID, &r.Author, &rating, &r.Title, &r.Body,
		&r.Language, &r.URL, &r.Version, &r.SourceUpdatedAt, &r.IngestedAt, &r.Deleted)
	if err != nil {
		return r, err
	}
	if rating != nil {
		v := int(*rating)
		r.Rating = &v
	}
	r.SourceUpdatedAt, r.IngestedAt = r.SourceUpdatedAt.UTC(), r.IngestedAt.UTC()
	return r, nil
}

// Page is one page of a movie's live reviews, newest source_updated_at first.
type Page struct {
	Reviews []review.Review
	// Next is the cursor of the following page, nil on the last one.
	Next *Cursor
	// LastChanged is when the movie's set of reviews last changed (nil
	// when it never had any).
	LastChanged *time.Time
}

// MovieReviews returns up to limit live reviews of movie after cursor
// (nil: from the newest), and when the movie's reviews last changed.
func (s *Store) MovieReviews(ctx context.Context, movie string, limit int, after *Cursor) (Page, error) {
	b := &pgx.Batch{}
	var page Page
	q := `SELECT ` + reviewColumns + ` FROM reviews WHERE movie_id = $1 AND NOT deleted
		ORDER BY source_updated_at DESC, id DESC LIMIT $2`
	args := []any{movie, limit + 1}
	if after != nil {
		q = `SELECT ` + reviewColumns + ` FROM reviews WHERE movie_id = $1 AND NOT deleted
			AND (source_updated_at, id) < ($3, $4)
			ORDER BY source_updated_at DESC, id DESC LIMIT $2`
		args = append(args, after.SourceUpdatedAt, after.ID)
	}
	b.Queue(q, args...).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			r, err := scanRow(rows)
			if err != nil {
				return err
			}
			page.Reviews = append(page.Reviews, r.Review)
		}
		return rows.Err()
	})
	b.Queue(`SELECT last_changed_at FROM movies WHERE movie_id = $1`, movie).QueryRow(func(row pgx.Row) error {
		var at time.Time
		err := row.Scan(&at)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err == nil {
			at = at.UTC()
			page.LastChanged = &at
		}
		return err
	})
	if err := s.db.SendBatch(ctx, b).Close(); err != nil {
		return Page{}, fmt.Errorf("read reviews of %s: %w", movie, err)
	}
	if len(page.Reviews) > limit {
		page.Reviews = page.Reviews[:limit]
		last := page.Reviews[limit-1]
		page.Next = &Cursor{SourceUpdatedAt: last.SourceUpdatedAt, ID: last.ID}
	}
	if page.Reviews == nil {
		page.Reviews = []review.Review{}
	}
	return page, nil
}

// Review returns a live review, or ErrNotFound.
func (s *Store) Review(ctx context.Context, id string) (review.Review, error) {
	r, err := scanRow(s.db.QueryRow(ctx, `SELECT `+reviewColumns+` FROM reviews WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && r.Deleted) {
		return review.Review{}, ErrNotFound
	}
	if err != nil {
		return review.Review{}, fmt.Errorf("read review %s: %w", id, err)
	}
	return r.Review, nil
}

// Rows returns the stored rows of ids, tombstones included, in no order.
func (s *Store) Rows(ctx context.Context, ids []string) ([]Row, error) {
	rows, err := s.db.Query(ctx, `SELECT `+reviewColumns+` FROM reviews WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read changed reviews: %w", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// LastChanged returns when movie's reviews last changed, or nil.
func (s *Store) LastChanged(ctx context.Context, movie string) (*time.Time, error) {
	var at time.Time
	err := s.db.QueryRow(ctx, `SELECT last_changed_at FROM movies WHERE movie_id = $1`, movie).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read movie %s: %w", movie, err)
	}
	at = at.UTC()
	return &at, nil
}

// Movie is a movie with live reviews.
type Movie struct {
	MovieID     string    `json:"movie_id"`
	Reviews     int       `json:"reviews"`
	LastUpdated time.Time `json:"last_updated"`
}

// RecentMovies returns the limit movies whose reviews changed last.
func (s *Store) RecentMovies(ctx context.Context, limit int) ([]Movie, error) {
	rows, err := s.db.Query(ctx, `SELECT m.movie_id, m.last_changed_at,
		(SELECT count(*) FROM reviews r WHERE r.movie_id = m.movie_id AND NOT r.deleted)
		FROM movies m ORDER BY m.last_changed_at DESC, m.movie_id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("read movies: %w", err)
	}
	defer rows.Close()
	out := []Movie{}
	for rows.Next() {
		var m Movie
		if err := rows.Scan(&m.MovieID, &m.LastUpdated, &m.Reviews); err != nil {
			return nil, err
		}
		m.LastUpdated = m.LastUpdated.UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}

// ProviderHealth is a provider_health row, written by the poller.
type ProviderHealth struct {
	Provider      string
	Status        string
	LastSuccessAt *time.Time
	LastAttemptAt *time.Time
	LastError     string
	BreakerState  string
	UpdatedAt     time.Time
}

// ProviderHealth returns every provider_health row, by provider.
func (s *Store) ProviderHealth(ctx context.Context) (map[string]ProviderHealth, error) {
	rows, err := s.db.Query(ctx, `SELECT provider, status, last_success_at, last_attempt_at, last_error,
		breaker_state, updated_at FROM provider_health`)
	if err != nil {
		return nil, fmt.Errorf("read provider health: %w", err)
	}
	defer rows.Close()
	out := map[string]ProviderHealth{}
	for rows.Next() {
		var h ProviderHealth
		if err := rows.Scan(&h.Provider, &h.Status, &h.LastSuccessAt, &h.LastAttemptAt, &h.LastError,
			&h.BreakerState, &h.UpdatedAt); err != nil {
			return nil, err
		}
		out[h.Provider] = h
	}
	return out, rows.Err()
}

// Offsets returns a consumer's stored next offset per partition of topic,
// and when the latest of them was stored.
func (s *Store) Offsets(ctx context.Context, consumer, topic string) (map[int]int64, time.Time, error) {
	stored, err := pgoffsets.Load(ctx, s.db, consumer, topic)
	if err != nil {
		return nil, time.Time{}, err
	}
	out := make(map[int]int64, len(stored))
	var latest time.Time
	for p, o := range stored {
		out[p] = o.Next
		if o.UpdatedAt.After(latest) {
			latest = o.UpdatedAt.UTC()
		}
	}
	return out, latest, nil
}

// Redriven counts dead letters that `reviewctl dlq redrive` sent back
// (0 when its table does not exist yet).
func (s *Store) Redriven(ctx context.Context) (int64, error) {
	var exists bool
	if err := s.db.QueryRow(ctx, `SELECT to_regclass('dlq_redrives') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var n int64
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM dlq_redrives`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count redriven dead letters: %w", err)
	}
	return n, nil
}

// Refresh is the outcome of a refresh request.
type Refresh struct {
	RequestID   string
	RequestedAt time.Time
	// Collapsed is true when an earlier request within the window took
	// this one in.
	Collapsed bool
}

// RecentRefresh returns the refresh of movie requested within window of
// at, if there is one. It holds a connection only for its one query.
func (s *Store) RecentRefresh(ctx context.Context, movie string, at time.Time, window time.Duration) (Refresh, bool, error) {
	var out Refresh
	err := s.db.QueryRow(ctx, `SELECT request_id, requested_at FROM refresh_requests
		WHERE movie_id = $1 AND requested_at > $2::timestamptz - $3::interval`, movie, at, window).Scan(&out.RequestID, &out.RequestedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Refresh{}, false, nil
	}
	if err != nil {
		return Refresh{}, false, fmt.Errorf("read the last refresh request of %s: %w", movie, err)
	}
	out.RequestedAt = out.RequestedAt.UTC()
	out.Collapsed = true
	return out, true, nil
}

// RecordRefresh records q, already queued, as movie's refresh request
// unless another one was recorded within window before q.RequestedAt (by
// another api replica while q was being queued); then it returns that one
// with Collapsed set. Recording the same request twice is a no-op. It
// holds a connection only for its one statement.
func (s *Store) RecordRefresh(ctx context.Context, movie string, q Refresh, window time.Duration) (Refresh, error) {
	var out Refresh
	err := s.db.QueryRow(ctx, `WITH up AS (
			INSERT INTO refresh_requests AS q (movie_id, request_id, requested_at) VALUES ($1, $2, $3)
			ON CONFLICT (movie_id) DO UPDATE SET request_id = excluded.request_id, requested_at = excluded.requested_at
			WHERE q.request_id = excluded.request_id OR q.requested_at <= excluded.requested_at - $4::interval
			RETURNING request_id, requested_at, false AS collapsed)
		SELECT * FROM up
		UNION ALL
		SELECT request_id, requested_at, true FROM refresh_requests WHERE movie_id = $1 AND NOT EXISTS (SELECT 1 FROM up)`,
		movie, q.RequestID, q.RequestedAt, window).Scan(&out.RequestID, &out.RequestedAt, &out.Collapsed)
	if errors.Is(err, pgx.ErrNoRows) {
		// The row that won was committed after this statement's snapshot
		// was taken: read it now.
		out.Collapsed = true
		err = s.db.QueryRow(ctx, `SELECT request_id, requested_at FROM refresh_requests WHERE movie_id = $1`, movie).
			Scan(&out.RequestID, &out.RequestedAt)
	}
	if err != nil {
		return Refresh{}, fmt.Errorf("record refresh request %s of %s: %w", q.RequestID, movie, err)
	}
	out.RequestedAt = out.RequestedAt.UTC()
	return out, nil
}
