package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/reconcile"
)

// ReviewStore is reconciliation's view of the database (a
// reconcile.Store): the reviews rows, the reconcile lock and
// reconcile_runs.
type ReviewStore struct{ db *DB }

// Reviews returns the database's ReviewStore.
func (db *DB) Reviews() ReviewStore { return ReviewStore{db} }

// Lock takes ReconcileLock; a nil unlock means another session holds it.
func (s ReviewStore) Lock(ctx context.Context) (func(), error) {
	return s.db.TryLock(ctx, ReconcileLock)
}

const rowColumns = `id, provider, external_id, coalesce(movie_id, ''), author, rating, title, body, language, url,
	version, deleted, content_hash, source_updated_at`

// Rows calls fn for every row of the given providers (every row when none
// is given), in no particular order. A missing reviews table is a
// MissingTableError.
func (s ReviewStore) Rows(ctx context.Context, providers []string, fn func(*reconcile.Row) error) error {
	q := `SELECT ` + rowColumns + ` FROM reviews`
	var args []any
	if len(providers) > 0 {
		q += ` WHERE provider = ANY($1)`
		args = append(args, providers)
	}
	return s.query(ctx, q, args, fn)
}

// RowsByID calls fn for the rows of the given ids that exist.
func (s ReviewStore) RowsByID(ctx context.Context, ids []string, fn func(*reconcile.Row) error) error {
	return s.query(ctx, `SELECT `+rowColumns+` FROM reviews WHERE id = ANY($1)`, []any{ids}, fn)
}

func (s ReviewStore) query(ctx context.Context, q string, args []any, fn func(*reconcile.Row) error) error {
	rows, err := s.db.pool.Query(ctx, q, args...)
	if err != nil {
		if mt := missingTable(err, "reviews", "0001_init.sql"); mt != nil {
			return mt
		}
		return fmt.Errorf("read reviews: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return fmt.Errorf("read reviews: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read reviews: %w", err)
	}
	return nil
}

func scanRow(rows pgx.Rows) (*reconcile.Row, error) {
	r := &reconcile.Row{}
	var rating *int16
	if err := rows.Scan(&r.ID, &r.Provider, &r.ExternalID, &r.MovieID, &r.Author, &rating, &r.Title, &r.Body, &r.Language,
		&r.URL, &r.Version, &r.Deleted, &r.ContentHash, &r.SourceUpdatedAt); err != nil {
		return nil, err
	}
	if rating != nil {
		v := int(*rating)
		r.Rating = &v
	}
	r.SourceUpdatedAt = r.SourceUpdatedAt.UTC()
	return r, nil
}

// RecordRun keeps an --apply run in reconcile_runs, under a new run id.
func (s ReviewStore) RecordRun(ctx context.Context, rep *reconcile.Report, started time.Time, by string) error {
	snap, _ := json.Marshal(rep.Snapshot)
	counts, _ := json.Marshal(rep.Counts)
	var sent, repaired, notRepaired int
	if rep.Repair != nil {
		sent, repaired, notRepaired = rep.Repair.Sent, rep.Repair.Repaired, len(rep.Repair.NotRepaired)
	}
	provs := rep.Providers
	if provs == nil {
		provs = []string{}
	}
	_, err := s.db.pool.Exec(ctx, `INSERT INTO reconcile_runs (run_id, started_at, since, providers, snapshot, counts, sent, repaired,
		not_repaired, exit_code, run_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		runID(), started, rep.Since, provs, snap, counts, sent, repaired, notRepaired, rep.ExitCode, by)
	return err
}

// runID returns rc_ and 20 random hex characters.
func runID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return "rc_" + hex.EncodeToString(b)
}
