package pgoffsets_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reviewpipe/reviewpipe/pkg/pgoffsets"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// lockAndAdvance runs one batch's offset handling in its own transaction:
// lock at first, advance to next, commit. It returns the stored offset
// the lock found.
func lockAndAdvance(ctx context.Context, q interface {
	Begin(context.Context) (pgx.Tx, error)
}, p pgoffsets.Partition, first, next int64) (int64, error) {
	var found int64
	err := pgx.BeginFunc(ctx, q, func(tx pgx.Tx) error {
		c, err := pgoffsets.Lock(ctx, tx, p, first)
		if err != nil {
			return err
		}
		found = c.Next
		return c.Advance(ctx, next)
	})
	return found, err
}

func TestLockAdvanceAndRead(t *testing.T) {
	st := testenv.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p0 := pgoffsets.Partition{Consumer: "group-a", Topic: "topic", Partition: 0}
	p1 := pgoffsets.Partition{Consumer: "group-a", Topic: "topic", Partition: 1}

	if next, ok, err := pgoffsets.Next(ctx, st.DB, p0); err != nil || ok {
		t.Fatalf("fresh partition: %d %v %v, want nothing stored", next, ok, err)
	}
	// A rolled-back batch leaves nothing, not even the row the lock made.
	rollback := errors.New("rollback")
	err := pgx.BeginFunc(ctx, st.DB, func(tx pgx.Tx) error {
		c, err := pgoffsets.Lock(ctx, tx, p0, 5)
		if err != nil {
			return err
		}
		if err := c.Advance(ctx, 10); err != nil {
			return err
		}
		return rollback
	})
	if !errors.Is(err, rollback) {
		t.Fatal(err)
	}
	if _, ok, err := pgoffsets.Next(ctx, st.DB, p0); err != nil || ok {
		t.Fatalf("after a rollback: %v %v, want nothing stored", ok, err)
	}

	// The first lock creates the row at the batch's first offset.
	if found, err := lockAndAdvance(ctx, st.DB, p0, 5, 10); err != nil || found != 5 {
		t.Fatalf("first batch: lock found %d, %v; want 5", found, err)
	}
	if found, err := lockAndAdvance(ctx, st.DB, p0, 10, 20); err != nil || found != 10 {
		t.Fatalf("second batch: lock found %d, %v; want 10", found, err)
	}
	// An offset below the stored one (a batch handed again) never moves
	// the stored one back.
	if found, err := lockAndAdvance(ctx, st.DB, p0, 0, 15); err != nil || found != 20 {
		t.Fatalf("old batch: lock found %d, %v; want 20", found, err)
	}
	if next, ok, err := pgoffsets.Next(ctx, st.DB, p0); err != nil || !ok || next != 20 {
		t.Fatalf("stored %d %v %v, want 20", next, ok, err)
	}
	// QueueAdvance does the same in the caller's batch.
	err = pgx.BeginFunc(ctx, st.DB, func(tx pgx.Tx) error {
		c, err := pgoffsets.Lock(ctx, tx, p1, 0)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		c.QueueAdvance(b, 7)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	// Another consumer and another topic are rows of their own.
	if _, err := lockAndAdvance(ctx, st.DB, pgoffsets.Partition{Consumer: "group-b", Topic: "topic"}, 0, 99); err != nil {
		t.Fatal(err)
	}
	if _, err := lockAndAdvance(ctx, st.DB, pgoffsets.Partition{Consumer: "group-a", Topic: "other"}, 0, 98); err != nil {
		t.Fatal(err)
	}

	got, err := pgoffsets.Load(ctx, st.DB, "group-a", "topic")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Next != 20 || got[1].Next != 7 {
		t.Fatalf("Load: %+v, want partition 0 at 20 and 1 at 7", got)
	}
	for p, s := range got {
		if time.Since(s.UpdatedAt) > time.Minute || s.UpdatedAt.After(time.Now().Add(time.Minute)) {
			t.Errorf("partition %d: updated at %s, want about now", p, s.UpdatedAt)
		}
	}
}

// A second writer of a partition (a member that lost it in a rebalance)
// waits on the lock while the first transaction is open, then finds what
// the first stored: a batch is applied once.
func TestLockMakesASecondWriterWait(t *testing.T) {
	st := testenv.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := pgoffsets.Partition{Consumer: "group", Topic: "topic", Partition: 3}

	for _, fresh := range []bool{true, false} {
		t.Run(fmt.Sprintf("fresh=%v", fresh), func(t *testing.T) {
			base := int64(100)
			if fresh {
				base = 0
			} else if _, err := lockAndAdvance(ctx, st.DB, p, 0, base); err != nil {
				t.Fatal(err)
			}
			first, err := st.DB.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer first.Rollback(ctx)
			c, err := pgoffsets.Lock(ctx, first, p, base)
			if err != nil || c.Next != base {
				t.Fatalf("first lock: %+v %v, want %d", c, err, base)
			}
			if err := c.Advance(ctx, base+50); err != nil {
				t.Fatal(err)
			}

			type result struct {
				found int64
				err   error
			}
			second := make(chan result, 1)
			go func() {
				found, err := lockAndAdvance(ctx, st.DB, p, base, base+50)
				second <- result{found, err}
			}()
			// The second writer is blocked on the row (or, for a fresh
			// partition, on the first's uncommitted insert).
			testenv.Eventually(t, 10*time.Second, func() error {
				var waiting int
				if err := st.DB.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
					WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
					return err
				}
				if waiting != 1 {
					return fmt.Errorf("%d sessions wait on a lock, want the second writer", waiting)
				}
				return nil
			})
			select {
			case r := <-second:
				t.Fatalf("the second writer did not wait for the first: %+v", r)
			default:
			}
			if err := first.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			r := <-second
			if r.err != nil || r.found != base+50 {
				t.Fatalf("second writer found %d, %v; want %d, what the first stored", r.found, r.err, base+50)
			}
		})
	}
}
