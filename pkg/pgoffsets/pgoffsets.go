// Package pgoffsets keeps consumer groups' Kafka offsets in PostgreSQL
// (table consumer_offsets, migration 0001 of pkg/pgstore), written in the
// same transaction as the rows a batch produced: whatever a consumer keeps
// in PostgreSQL equals its topic up to the stored offset, effectively once,
// however often Kafka hands a batch again. The sink and the analytics
// consumer use it; a consumer resumes a partition from Next and, per
// batch, calls Lock, skips the records below Claim.Next, writes its rows
// and advances the claim, all in one transaction.
package pgoffsets

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Querier is what the reads need: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Partition names one partition's row: the consumer (its group id, as the
// offsets are kept under), the topic and the partition.
type Partition struct {
	Consumer  string
	Topic     string
	Partition int
}

func (p Partition) String() string { return fmt.Sprintf("%s %s/%d", p.Consumer, p.Topic, p.Partition) }

// Stored is a partition's row: the next offset to consume and when it was
// last advanced.
type Stored struct {
	Next      int64
	UpdatedAt time.Time
}

// Next returns the stored next offset of p, and false when nothing of p was
// stored yet (resume from Kafka's committed offset, or the first one, then).
func Next(ctx context.Context, q Querier, p Partition) (int64, bool, error) {
	var next int64
	err := q.QueryRow(ctx, `SELECT next_offset FROM consumer_offsets
		WHERE consumer = $1 AND topic = $2 AND partition = $3`, p.Consumer, p.Topic, p.Partition).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read stored offset of %s: %w", p, err)
	}
	return next, true, nil
}

// Load returns consumer's stored offsets of topic by partition; a partition
// with nothing stored is missing from the map.
func Load(ctx context.Context, q Querier, consumer, topic string) (map[int]Stored, error) {
	rows, err := q.Query(ctx, `SELECT partition, next_offset, updated_at FROM consumer_offsets
		WHERE consumer = $1 AND topic = $2`, consumer, topic)
	if err != nil {
		return nil, fmt.Errorf("read stored offsets of %s %s: %w", consumer, topic, err)
	}
	out := map[int]Stored{}
	for rows.Next() {
		var (
			p int
			s Stored
		)
		if err := rows.Scan(&p, &s.Next, &s.UpdatedAt); err != nil {
			return nil, fmt.Errorf("read stored offsets of %s %s: %w", consumer, topic, err)
		}
		out[p] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read stored offsets of %s %s: %w", consumer, topic, err)
	}
	return out, nil
}

// Claim is a partition's offset row, locked by the transaction that took
// it until that transaction ends. Use it only within that transaction.
type Claim struct {
	p Partition
	// Next is the stored next offset at the time of the lock: records
	// below it were applied by an earlier transaction and must be skipped.
	Next int64
	tx   pgx.Tx
}

// Lock takes p's offset row in tx, creating it at first (the batch's first
// offset) when p has none, and returns it with the stored next offset. A
// second transaction locking p (a member that lost the partition in a
// rebalance and has not noticed yet, or a batch handed again) waits until
// tx ends, then finds what tx stored, so a batch is applied once.
//
// One statement both creates and locks the row, and sees the latest
// committed offset even when it was stored after tx began. The analytics
// consumer used to insert the row (DO NOTHING) and then SELECT ... FOR
// UPDATE it: as safe against a second writer, but two statements, and a
// row removed between them (an operator resetting a consumer) failed the
// batch; here it is created again.
func Lock(ctx context.Context, tx pgx.Tx, p Partition, first int64) (*Claim, error) {
	c := &Claim{p: p, tx: tx}
	if err := tx.QueryRow(ctx, lockSQL, p.Consumer, p.Topic, p.Partition, first).Scan(&c.Next); err != nil {
		return nil, fmt.Errorf("lock stored offset of %s: %w", p, err)
	}
	return c, nil
}

// QueueLock queues Lock on b, for a caller that sends it in one round trip
// with the statements that depend on the lock (they run after it, in
// order); b must be sent in tx. The claim's Next is set once b's results
// are read (the batch's Close), and valid only when that returned nil.
func QueueLock(b *pgx.Batch, tx pgx.Tx, p Partition, first int64) *Claim {
	c := &Claim{p: p, tx: tx}
	b.Queue(lockSQL, p.Consumer, p.Topic, p.Partition, first).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&c.Next); err != nil {
			return fmt.Errorf("lock stored offset of %s: %w", p, err)
		}
		return nil
	})
	return c
}

// lockSQL creates and locks a partition's offset row. DO UPDATE, not DO
// NOTHING: only an update takes the row lock and returns the existing row.
const lockSQL = `INSERT INTO consumer_offsets AS o (consumer, topic, partition, next_offset)
	VALUES ($1, $2, $3, $4)
	ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = o.next_offset
	RETURNING next_offset`

// advanceSQL stores a next offset; GREATEST keeps the offset from ever
// moving back, whatever a caller passes.
const advanceSQL = `UPDATE consumer_offsets SET next_offset = GREATEST(next_offset, $4), updated_at = now()
	WHERE consumer = $1 AND topic = $2 AND partition = $3`

// Advance stores next as the partition's next offset in the claim's
// transaction; it takes effect when the transaction commits. An offset
// below the stored one leaves it as it is.
func (c *Claim) Advance(ctx context.Context, next int64) error {
	if _, err := c.tx.Exec(ctx, advanceSQL, c.p.Consumer, c.p.Topic, c.p.Partition, next); err != nil {
		return fmt.Errorf("store offset %d of %s: %w", next, c.p, err)
	}
	return nil
}

// QueueAdvance queues Advance on b, for a caller that sends its last
// statements in one round trip; b must be sent in the claim's transaction.
func (c *Claim) QueueAdvance(b *pgx.Batch, next int64) {
	b.Queue(advanceSQL, c.p.Consumer, c.p.Topic, c.p.Partition, next)
}
