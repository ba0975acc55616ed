package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/kafkalog"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/progress"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/reconcile"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/store"
)

const reconcileHelp = `usage: reviewctl reconcile [--since T] [--provider P] [--apply] [--json]

Reads reviews.raw.v1 from the start (or from the offsets of time T) up to the end offsets taken
when it starts, re-derives the expected state per review with the processor's own code (provider
adapters, pkg/dedupe), and compares it with the reviews table, tombstones included:

  missing     the log has the review (or its tombstone), the store has no row
  stale       the store's version is lower than the log's
  extra       the store shows a review the log does not have, or that the log deleted
  mismatched  same version, other content, content hash or deletion
  ahead       the store's version is higher than any valid event of the log: the sink's version
              guard keeps such a row, so it cannot be repaired through the normal path

Before comparing, it waits (--settle) until the processor's and the sink's offsets pass the
snapshot, so changes on their way are not reported; reviews changed after the snapshot are left
for the next run. With --apply, it sends the log's change for every repairable review to
reviews.normalized.v1 (repair: true), through the sink and its version guard, and waits (--wait)
until the store shows them. It never writes the reviews table itself. One reconcile at a time per
database (a PostgreSQL advisory lock). With --since, only the reviews changed since T are judged.

Exit status: 0 in sync (or every drift repaired), 1 drift found (in a dry run, or left after
--apply), 2 an error.
`

// reconcile re-derives the expected state from the raw log, diffs it with
// the store and, with --apply, repairs it (reconcile.Reconciler).
func (c *cmd) reconcile(ctx context.Context, args []string) int {
	fs := c.newFlags("reconcile", "reconcile [--since T] [--provider P] [--apply] [--json]")
	fs.Usage = func() {
		io.WriteString(c.Err, reconcileHelp+"\nflags:\n")
		fs.PrintDefaults()
	}
	var opt reconcile.Options
	since := timeFlag{now: c.Now}
	fs.Var(&since, "since", "only records written at or after this time, and only the reviews they touch: "+timeHelp)
	provs := fs.String("provider", "", "only this provider's reviews (comma-separated list)")
	fs.BoolVar(&opt.Apply, "apply", false, "repair the drift through reviews.normalized.v1 and wait for the store to show it")
	asJSON := fs.Bool("json", false, "machine-readable report on stdout")
	fs.IntVar(&opt.Examples, "examples", 5, "examples shown per kind of drift")
	fs.DurationVar(&opt.Settle, "settle", 30*time.Second, "wait at most this long for the processor and the sink to pass the snapshot (0: do not wait)")
	fs.DurationVar(&opt.Wait, "wait", 60*time.Second, "with --apply: wait at most this long for the store to show the repairs")
	fs.IntVar(&opt.MaxDeletes, "max-deletes", 100, "with --apply: delete at most this many rows that have no valid event in the log; above it, delete none")
	if code := c.parseArgs(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return c.errorf("reconcile takes no arguments, got %q", fs.Args())
	}
	opt.Since = since.ptr()
	opt.Providers = splitList(*provs)
	rc, done, code := c.reconciler(ctx, opt.Providers)
	if rc == nil {
		return code
	}
	defer done()
	rep, err := rc.Run(ctx, opt)
	if err != nil {
		if ctx.Err() != nil {
			return c.errorf("reconcile interrupted: %v", context.Cause(ctx))
		}
		return c.errorf("%v", err)
	}
	if *asJSON {
		if code := c.writeJSON(rep); code != ExitOK {
			return code
		}
	} else {
		printReconcile(c.Out, rep)
	}
	return rep.ExitCode
}

// reconciler wires a Reconciler to Kafka and PostgreSQL; done closes what
// it opened. On a failure it returns nil and the exit code.
func (c *cmd) reconciler(ctx context.Context, providers []string) (rc *reconcile.Reconciler, done func(), code int) {
	reg, err := c.knownProviders(providers...)
	if err != nil {
		return nil, nil, c.errorf("%v", err)
	}
	s, err := c.settings()
	if err != nil {
		return nil, nil, c.errorf("%v", err)
	}
	db, err := s.openDB(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, c.errorf("reconcile interrupted: %v", context.Cause(ctx))
		}
		return nil, nil, c.errorf("%v", err)
	}
	w := s.writers()
	raw := s.log(kafkax.TopicRaw)
	rc = &reconcile.Reconciler{
		Log:   raw,
		Store: db.Reviews(),
		Pipeline: pipeline{raw: raw, norm: s.log(kafkax.TopicNormalized), db: db,
			processorGroup: s.names.Group(kafkax.GroupProcessor), sinkGroup: s.names.Group(kafkax.GroupSink)},
		Repairs:   w,
		Providers: reg,
		Names: reconcile.Names{NormalizedTopic: s.topic(kafkax.TopicNormalized),
			ProcessorGroup: s.names.Group(kafkax.GroupProcessor), SinkGroup: s.names.Group(kafkax.GroupSink)},
		Progress: c.progress(),
		Operator: c.operator(),
		Now:      c.Now,
	}
	return rc, func() { w.Close(); db.Close() }, ExitOK
}

// pipeline is reconcile.Pipeline on Kafka (the processor's committed
// offsets, the normalized topic's end) and PostgreSQL (the sink's
// consumer_offsets).
type pipeline struct {
	raw, norm                 *kafkalog.Client
	db                        *store.DB
	processorGroup, sinkGroup string
}

func (p pipeline) ProcessorOffsets(ctx context.Context, partitions []int) (map[int]int64, error) {
	return p.raw.Committed(ctx, p.processorGroup, partitions)
}

func (p pipeline) NormalizedEnds(ctx context.Context) (kafkalog.Spans, error) {
	return p.norm.Snapshot(ctx, time.Time{}, time.Time{})
}

func (p pipeline) SinkOffsets(ctx context.Context) (map[int]int64, error) {
	return p.db.SinkOffsets(ctx, p.sinkGroup, p.norm.Topic())
}

func printReconcile(w io.Writer, rep *reconcile.Report) {
	count := progress.Count
	from := "from the start"
	if rep.Since != nil {
		from = "from " + rep.Since.UTC().Format(time.RFC3339)
	}
	scope := ""
	if len(rep.Providers) > 0 {
		scope = " (providers: " + strings.Join(rep.Providers, ", ") + ")"
	}
	fmt.Fprintf(w, "log: %s %s to the end offsets at start, %s records on %d partitions%s\n",
		rep.Topic, from, count(rep.Snapshot.Records()), len(rep.Snapshot), scope)
	invalid := int64(0)
	for _, n := range rep.Read.Invalid {
		invalid += n
	}
	fmt.Fprintf(w, "read %s records in %.1fs (%s/s): %s events, %s invalid (dead-lettered by the processor), %s reviews expected\n",
		count(rep.Read.Records), rep.Read.Seconds, count(int64(rep.Read.RecordsPerSec)), count(rep.Read.Events), count(invalid), count(int64(rep.Read.Reviews)))
	fmt.Fprintf(w, "store: %s rows compared; %s in sync, %s orphan tombstones, %s changed after the snapshot (not judged)\n",
		count(int64(rep.StoreRows)), count(int64(rep.InSync)), count(int64(rep.OrphanTombstones)), count(int64(rep.InFlight)))
	if rep.Drift == 0 {
		fmt.Fprintln(w, "in sync: no drift")
	} else {
		fmt.Fprintf(w, "drift: %s reviews (%s repairable through the normal write path)\n", count(int64(rep.Drift)), count(int64(rep.Repairable)))
		for _, k := range reconcile.Kinds {
			fmt.Fprintf(w, "  %-11s %d\n", k, rep.Counts[k])
			for _, f := range rep.Examples[k] {
				fmt.Fprintf(w, "      %s: %s\n", f.ID, f.Detail)
			}
		}
	}
	printRepair(w, rep)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// printRepair prints what --apply did, or that a dry run changed nothing.
func printRepair(w io.Writer, rep *reconcile.Report) {
	r := rep.Repair
	if r == nil {
		if rep.Drift > 0 {
			fmt.Fprintf(w, "dry run: nothing changed; run with --apply to repair %d of them\n", rep.Repairable)
		}
		return
	}
	fmt.Fprintf(w, "repair: %d events sent to reviews.normalized.v1; %d reviews repaired, %d not shown by the store within the wait (waited %s)\n",
		r.Sent, r.Repaired, len(r.NotRepaired), dash(r.WaitedFor))
	for i, f := range r.NotRepaired {
		if i == 5 {
			fmt.Fprintf(w, "      ... and %d more\n", len(r.NotRepaired)-5)
			break
		}
		fmt.Fprintf(w, "      %s (%s): %s\n", f.ID, f.Kind, f.Detail)
	}
	if left := rep.Drift - r.Repaired; left > 0 {
		fmt.Fprintf(w, "left: %d drifted reviews (%d that the normal write path cannot repair, %d sent but not shown)\n",
			left, rep.Drift-rep.Repairable, len(r.NotRepaired))
	}
}
