// Package reconcile re-derives the state the reviews table should have from
// reviews.raw.v1, with the processor's own code (provider.NormalizeRecord
// and pkg/dedupe), compares it with the table and repairs the drift through
// the normal write path (reviews.normalized.v1 and the sink's version
// guard). It decides what is drift, of which kind, and what can be
// repaired; the Kafka log, the PostgreSQL store, the pipeline's offsets and
// the repair writer come in behind small interfaces (Log, Store, Pipeline,
// Sender), so the decisions are tested without I/O.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/kafkalog"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/progress"
)

// Log is reviews.raw.v1 as reconcile reads it (kafkalog.Client).
type Log interface {
	// Topic is the topic's full name, for reports and errors.
	Topic() string
	// Snapshot returns the offset ranges from the first record at or
	// after from (zero: the start) to the end offsets of the moment.
	Snapshot(ctx context.Context, from, to time.Time) (kafkalog.Spans, error)
	// Scan calls fn for every record of ss, in order per partition,
	// concurrently across partitions.
	Scan(ctx context.Context, ss kafkalog.Spans, fn func(*kafka.Message) error) error
	// Fetch calls fn for the records at the given offsets of a partition.
	Fetch(ctx context.Context, partition int, offsets []int64, fn func(*kafka.Message) error) error
}

// Store is the reviews table and reconcile's bookkeeping in PostgreSQL.
type Store interface {
	// Lock takes the advisory lock that allows one reconcile per
	// database; it returns a nil unlock when another session holds it.
	Lock(ctx context.Context) (unlock func(), err error)
	// Rows calls fn for every row of the given providers (all: none
	// given).
	Rows(ctx context.Context, providers []string, fn func(*Row) error) error
	// RowsByID calls fn for the rows of the given ids that exist.
	RowsByID(ctx context.Context, ids []string, fn func(*Row) error) error
	// RecordRun keeps an --apply run in reconcile_runs.
	RecordRun(ctx context.Context, rep *Report, started time.Time, by string) error
}

// Pipeline tells how far the processor and the sink have carried the log.
type Pipeline interface {
	// ProcessorOffsets returns the processor group's committed offsets on
	// reviews.raw.v1 of the given partitions; partitions without one are
	// left out.
	ProcessorOffsets(ctx context.Context, partitions []int) (map[int]int64, error)
	// NormalizedEnds returns the offset ranges of reviews.normalized.v1
	// up to its end offsets of the moment.
	NormalizedEnds(ctx context.Context) (kafkalog.Spans, error)
	// SinkOffsets returns the sink's next offset per partition of
	// reviews.normalized.v1 (its consumer_offsets rows).
	SinkOffsets(ctx context.Context) (map[int]int64, error)
}

// Sender writes records to a topic, acknowledged by every in-sync replica
// when it returns nil (kafkalog.Writers); reconcile writes its repairs to
// reviews.normalized.v1.
type Sender interface {
	Write(ctx context.Context, topic kafkax.Topic, msgs ...kafka.Message) error
}

// Names are the topic and group names that notes and errors mention.
type Names struct {
	NormalizedTopic string
	ProcessorGroup  string
	SinkGroup       string
}

// Reconciler runs reconciliations. Its fields are its dependencies; Log,
// Store, Pipeline, Repairs and Providers are required. One Run at a time per
// Reconciler (the Store's lock keeps one per database anyway).
type Reconciler struct {
	Log       Log
	Store     Store
	Pipeline  Pipeline
	Repairs   Sender
	Providers *provider.Registry
	Names     Names
	// Progress reports the long steps (default: none).
	Progress progress.Func
	// Operator names who ran it, for reconcile_runs.
	Operator string
	// Now is the clock (default time.Now); PollEvery how often the
	// waits look again (default 200ms).
	Now       func() time.Time
	PollEvery time.Duration
}

// Options are a run's settings, the command's flags.
type Options struct {
	// Since, when set, judges only the reviews the log changed since then.
	Since *time.Time
	// Providers, when set, judges only those providers' reviews.
	Providers []string
	// Apply repairs what the normal write path can repair.
	Apply bool
	// Examples bounds the findings shown per kind.
	Examples int
	// Settle bounds the wait for the pipeline to pass the snapshot (0:
	// do not wait); Wait the wait for the store to show the repairs.
	Settle, Wait time.Duration
	// MaxDeletes bounds the rows --apply deletes for having no valid event
	// in the log; above it, none is deleted.
	MaxDeletes int
}

// ErrLocked is Run's error when another reconcile holds the database's lock.
var ErrLocked = errors.New("another reconcile is running against this database (it holds the reconcile advisory lock); try again when it is done")

// Run reconciles: lock, snapshot, fold, settle, compare, report and, with
// opt.Apply, repair. It blocks until done or ctx ends. Its Report has
// ExitCode 0 in sync (or repaired), 1 drift left; an error means no report.
func (r *Reconciler) Run(ctx context.Context, opt Options) (*Report, error) {
	started := r.now()
	unlock, err := r.Store.Lock(ctx)
	if err != nil {
		return nil, err
	}
	if unlock == nil {
		return nil, ErrLocked
	}
	defer unlock()

	snap, err := r.snapshot(ctx, opt)
	if err != nil {
		return nil, err
	}
	rep := newReport(r.Log.Topic(), snap, opt)
	x, err := r.fold(ctx, snap, opt, rep)
	if err != nil {
		return nil, err
	}
	notes, err := r.settle(ctx, snap, opt.Settle)
	if err != nil {
		return nil, err
	}
	rep.Notes = append(rep.Notes, notes...)
	d, err := r.compare(ctx, x, snap, opt)
	if err != nil {
		return nil, err
	}
	repairable, unrepairable := rep.judge(d, snap, r.Providers, opt)
	if !opt.Apply || len(repairable) == 0 {
		if opt.Apply && rep.Drift > 0 {
			rep.Repair = &RepairOutcome{NotRepaired: []*Finding{}}
			rep.Notes = append(rep.Notes, fmt.Sprintf("none of the %d drifted reviews can be repaired through the normal write path", rep.Drift))
			r.record(ctx, rep, started)
		}
		return rep, nil
	}
	if err := r.repair(ctx, rep, repairable, unrepairable, opt.Wait); err != nil {
		return nil, err
	}
	r.record(ctx, rep, started)
	return rep, nil
}

// snapshot takes the end offsets of the raw log now, from the start or
// from opt.Since: what this run judges.
func (r *Reconciler) snapshot(ctx context.Context, opt Options) (kafkalog.Spans, error) {
	var since time.Time
	if opt.Since != nil {
		since = *opt.Since
	}
	return r.Log.Snapshot(ctx, since, time.Time{})
}

// fold reads the snapshot's records, every partition at once, and folds
// each partition's records in order into its expected state; it fills the
// report's read section.
func (r *Reconciler) fold(ctx context.Context, snap kafkalog.Spans, opt Options, rep *Report) (*expectedState, error) {
	start := r.now()
	now := start.UTC()
	folders := map[int]*folder{}
	for _, sp := range snap {
		folders[sp.Partition] = newFolder(r.Providers, opt.Providers, now)
	}
	prog := r.progress("reading "+r.Log.Topic(), "records", snap.Records())
	const step = 1024
	err := r.Log.Scan(ctx, snap, func(m *kafka.Message) error {
		f := folders[m.Partition]
		f.add(m)
		if f.stats.Records%step == 0 {
			prog.Add(step)
		}
		return nil
	})
	x := &expectedState{parts: map[int]*foldStore{}}
	var st FoldStats
	for p, f := range folders {
		fst := f.finish()
		prog.Add(fst.Records % step)
		st.add(fst)
		x.parts[p] = f.store
	}
	prog.Done()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.Log.Topic(), err)
	}
	took := r.now().Sub(start)
	rep.Read = ReadReport{FoldStats: st, Reviews: x.keys(), Seconds: took.Seconds()}
	if took > 0 {
		rep.Read.RecordsPerSec = float64(st.Records) / took.Seconds()
	}
	return x, nil
}

// compare classifies the store's rows against the expected state (only the
// expected keys with --since), sets aside the reviews that changed after
// the snapshot and sorts the findings for the report.
func (r *Reconciler) compare(ctx context.Context, x *expectedState, snap kafkalog.Spans, opt Options) (*diff, error) {
	prog := r.progress("comparing with the store", "rows", 0)
	var d *diff
	var err error
	if opt.Since != nil {
		prog.SetTotal(int64(x.keys()))
		d, err = compareKeys(ctx, r.Store, x, prog)
	} else {
		d, err = compareAll(ctx, r.Store, x, opt.Providers, prog)
	}
	prog.Done()
	if err != nil {
		return nil, err
	}
	if err := excludeInFlight(ctx, r.Log, snap, d); err != nil {
		return nil, fmt.Errorf("read the log past the snapshot: %w", err)
	}
	d.sort()
	return d, nil
}

// record keeps an --apply run in reconcile_runs. A failure to record is a
// note, not an error: the repair itself is done.
func (r *Reconciler) record(ctx context.Context, rep *Report, started time.Time) {
	if err := r.Store.RecordRun(ctx, rep, started, r.Operator); err != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the run was not recorded in reconcile_runs: %v", err))
	}
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reconciler) progress(label, unit string, total int64) progress.Tracker {
	if r.Progress == nil {
		return progress.None(label, unit, total)
	}
	return r.Progress(label, unit, total)
}

// sleep waits PollEvery, or until ctx ends.
func (r *Reconciler) sleep(ctx context.Context) error {
	d := r.PollEvery
	if d <= 0 {
		d = 200 * time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
