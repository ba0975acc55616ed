package load

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reviewpipe/reviewpipe/pkg/changefeed"
)

// notifyChannel is the sink's commit notification channel: PostgreSQL
// delivers a NOTIFY only when its transaction commits, so its arrival is
// when the rows became readable.
const notifyChannel = changefeed.Channel

// Visibility records when each review id was first announced as committed.
// Safe for concurrent use.
type Visibility struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// Listen LISTENs on the sink's notifications in the database at url until
// ctx ends. It returns once listening has started; errors after that end
// the recording silently (the coverage figure shows it).
func Listen(ctx context.Context, url string) (*Visibility, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("listen: %w", err)
	}
	v := &Visibility{seen: map[string]time.Time{}}
	go func() {
		defer conn.Close(context.Background())
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				return
			}
			now := time.Now()
			notices, err := changefeed.Parse(n.Payload)
			if err != nil {
				continue
			}
			v.mu.Lock()
			for _, notice := range notices {
				for _, id := range notice.IDs {
					if _, ok := v.seen[id]; !ok {
						v.seen[id] = now
					}
				}
			}
			v.mu.Unlock()
		}
	}()
	return v, nil
}

// Freshness is the distribution of sent-to-visible times, in milliseconds,
// and the share of sent reviews it covers (ids missing from notifications
// that were cut short are not counted).
type Freshness struct {
	Count    int     `json:"count"`
	Coverage float64 `json:"coverage"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
}

// Freshness matches sent times (review id -> time.Time) with visibility.
func (v *Visibility) Freshness(sent *sync.Map) Freshness {
	v.mu.Lock()
	defer v.mu.Unlock()
	var ms []float64
	total := 0
	sent.Range(func(k, val any) bool {
		total++
		if at, ok := v.seen[k.(string)]; ok {
			ms = append(ms, float64(at.Sub(val.(time.Time)))/float64(time.Millisecond))
		}
		return true
	})
	sort.Float64s(ms)
	f := Freshness{Count: len(ms)}
	if total > 0 {
		f.Coverage = float64(len(ms)) / float64(total)
	}
	if len(ms) > 0 {
		f.P50, f.P99, f.Max = Quantile(ms, .5), Quantile(ms, .99), ms[len(ms)-1]
	}
	return f
}

// CountRows returns the number of rows in reviews.
func CountRows(ctx context.Context, db *pgxpool.Pool) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, "SELECT count(*) FROM reviews").Scan(&n)
	return n, err
}

// WaitRows polls the row count every 100ms until it reaches want or
// timeout passes, and returns the last count and when it was read.
func WaitRows(ctx context.Context, db *pgxpool.Pool, want int64, timeout time.Duration) (int64, time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := CountRows(ctx, db)
		now := time.Now()
		if err != nil || n >= want || now.After(deadline) {
			return n, now, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StoredFreshness is accepted_at to committed_at of rows whose id starts
// with prefix, from the table itself, in milliseconds. committed_at is the
// sink transaction's now() (its start), so this slightly understates.
func StoredFreshness(ctx context.Context, db *pgxpool.Pool, prefix string) (p50, p99 float64, err error) {
	err = db.QueryRow(ctx, `SELECT
		COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM committed_at - accepted_at)), 0) * 1000,
		COALESCE(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM committed_at - accepted_at)), 0) * 1000
		FROM reviews WHERE id LIKE $1 AND accepted_at IS NOT NULL`, "generic:"+prefix+"-%").Scan(&p50, &p99)
	return p50, p99, err
}

// CommittedAt calls f with the id and committed_at (the sink transaction's
// now(), its start) of every row whose id starts with idPrefix.
func CommittedAt(ctx context.Context, db *pgxpool.Pool, idPrefix string, f func(id string, at time.Time)) error {
	rows, err := db.Query(ctx, `SELECT id, committed_at FROM reviews WHERE id LIKE $1 AND committed_at IS NOT NULL`, idPrefix+"%")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return err
		}
		f(id, at)
	}
	return rows.Err()
}

// each calls f with every review id seen committed and when.
func (v *Visibility) each(f func(id string, at time.Time)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for id, at := range v.seen {
		f(id, at)
	}
}
