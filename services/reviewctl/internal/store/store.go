// Package store is reviewctl's PostgreSQL side: the pool, the advisory
// locks that keep one reconcile and one redrive per database, the reviews
// rows and reconcile_runs of reconciliation (ReviewStore, a
// reconcile.Store), the dlq_redrives ledger of dead letters (Ledger, a
// deadletters.Ledger), the sink's consumer_offsets and the poller's
// backfill_jobs. It translates "relation does not exist" into a
// MissingTableError that says which migration creates the table.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
)

// The advisory lock keys.
const (
	// ReconcileLock refuses a second concurrent reconcile against one
	// database ("reviewctl-reconcile").
	ReconcileLock int64 = 0x7265766965770031
	// RedriveLock keeps two redrives from sending the same dead letters at
	// once ("reviewctl-redrive").
	RedriveLock int64 = 0x7265766965770030
)

// DB is a small pool on the database; safe for concurrent use. The caller
// closes it.
type DB struct {
	pool *pgxpool.Pool
}

// Open opens a pool of 4 connections on url; its error names the database
// with the password masked.
func Open(ctx context.Context, url string) (*DB, error) {
	pool, err := pgstore.Open(ctx, url, 4)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL at %s: %w", config.MaskURL(url), err)
	}
	return &DB{pool: pool}, nil
}

// Close closes the pool.
func (db *DB) Close() { db.pool.Close() }

// TryLock takes a session-level advisory lock on a connection of its own.
// It returns nil, nil when another session holds the lock; else a function
// that releases the lock and the connection.
func (db *DB) TryLock(ctx context.Context, key int64) (func(), error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("PostgreSQL advisory lock: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, nil
	}
	return func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Exec(c, `SELECT pg_advisory_unlock($1)`, key)
		conn.Release()
	}, nil
}

// SinkOffsets returns the next offset per partition of topic that consumer
// has applied (its consumer_offsets rows). A row that does not scan is left
// out.
func (db *DB) SinkOffsets(ctx context.Context, consumer, topic string) (map[int]int64, error) {
	rows, err := db.pool.Query(ctx, `SELECT partition, next_offset FROM consumer_offsets WHERE consumer = $1 AND topic = $2`,
		consumer, topic)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	done := map[int]int64{}
	for rows.Next() {
		var p int
		var off int64
		if err := rows.Scan(&p, &off); err == nil {
			done[p] = off
		}
	}
	return done, nil
}

// MissingTableError is the error of a query on a table that no applied
// migration has created yet.
type MissingTableError struct {
	Table, Migration string
}

func (e *MissingTableError) Error() string {
	return fmt.Sprintf("table %s does not exist: apply the migrations (%s) with `reviewctl setup`", e.Table, e.Migration)
}

// missingTable returns a MissingTableError when err is PostgreSQL's
// "relation does not exist" (SQLSTATE 42P01), else nil.
func missingTable(err error, table, migration string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return &MissingTableError{Table: table, Migration: migration}
	}
	return nil
}
