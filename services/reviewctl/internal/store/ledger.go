package store

import (
	"context"
	"fmt"

	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/deadletters"
)

// Ledger is the dlq_redrives ledger and the redrive lock (a
// deadletters.Ledger).
type Ledger struct{ db *DB }

// Ledger returns the database's redrive ledger.
func (db *DB) Ledger() Ledger { return Ledger{db} }

// Lock takes RedriveLock; a nil unlock means another session holds it.
func (l Ledger) Lock(ctx context.Context) (func(), error) { return l.db.TryLock(ctx, RedriveLock) }

// Redrives returns the ledger rows of the given dead-letter ids. A missing
// table is a MissingTableError.
func (l Ledger) Redrives(ctx context.Context, ids []string) (map[string]deadletters.Redrive, error) {
	rows, err := l.db.pool.Query(ctx, `SELECT dlq_id, redriven_at, target_topic, records, redriven_by
		FROM dlq_redrives WHERE dlq_id = ANY($1)`, ids)
	if err != nil {
		if mt := missingTable(err, "dlq_redrives", "0030_dlq_redrives.sql"); mt != nil {
			return nil, mt
		}
		return nil, fmt.Errorf("read dlq_redrives: %w", err)
	}
	defer rows.Close()
	out := make(map[string]deadletters.Redrive)
	for rows.Next() {
		var id string
		var r deadletters.Redrive
		if err := rows.Scan(&id, &r.At, &r.Topic, &r.Records, &r.By); err != nil {
			return nil, fmt.Errorf("read dlq_redrives: %w", err)
		}
		out[id] = r
	}
	return out, rows.Err()
}

// Record records p as redriven to topic by by; a dead letter recorded
// before keeps its row.
func (l Ledger) Record(ctx context.Context, p deadletters.Plan, topic, by string) error {
	dl := p.DeadLetter
	_, err := l.db.pool.Exec(ctx, `INSERT INTO dlq_redrives
		(dlq_id, stage, reason, dlq_key, provider, target_topic, records, event_ids, redriven_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (dlq_id) DO NOTHING`,
		dl.ID, string(dl.Stage), dl.Reason, dl.Key, dl.Provider, topic, len(p.Messages), p.EventIDs, by)
	return err
}
