package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

func init() {
	register("reconcile", "re-derive the expected state from reviews.raw.v1 and diff it with the store; --apply repairs", runReconcile)
}

// reconcileLock is the advisory lock that refuses a second concurrent
// reconcile against one database ("reviewctl-reconcile").
const reconcileLock int64 = 0x7265766965770031

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

type reconcileOpts struct {
	since     timeFlag
	providers []string
	apply     bool
	asJSON    bool
	examples  int
	settle    time.Duration
	wait      time.Duration
	// maxDeletes bounds the rows --apply deletes for having no valid
	// event in the log.
	maxDeletes int
}

// reconcileReport is the outcome, as --json prints it.
type reconcileReport struct {
	Topic            string                `json:"topic"`
	Since            *time.Time            `json:"since,omitempty"`
	Providers        []string              `json:"providers,omitempty"`
	Snapshot         spans                 `json:"snapshot"`
	Read             readReport            `json:"read"`
	StoreRows        int                   `json:"store_rows"`
	Counts           map[string]int        `json:"counts"`
	Drift            int                   `json:"drift"`
	Repairable       int                   `json:"repairable"`
	InSync           int                   `json:"in_sync"`
	OrphanTombstones int                   `json:"orphan_tombstones"`
	InFlight         int                   `json:"in_flight"`
	Examples         map[string][]*finding `json:"examples"`
	Applied          bool                  `json:"applied"`
	Repair           *repairOutcome        `json:"repair,omitempty"`
	Notes            []string              `json:"notes"`
	ExitCode         int                   `json:"exit_code"`
}

type readReport struct {
	foldStats
	Reviews       int     `json:"reviews"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_second"`
}

func runReconcile(ctx context.Context, args []string, o IO) int {
	fs := newFlags("reconcile", "reconcile [--since T] [--provider P] [--apply] [--json]", o)
	fs.Usage = func() {
		io.WriteString(o.Err, reconcileHelp+"\nflags:\n")
		fs.PrintDefaults()
	}
	var opt reconcileOpts
	fs.Var(&opt.since, "since", "only records written at or after this time, and only the reviews they touch: "+timeHelp)
	provs := fs.String("provider", "", "only this provider's reviews (comma-separated list)")
	fs.BoolVar(&opt.apply, "apply", false, "repair the drift through reviews.normalized.v1 and wait for the store to show it")
	fs.BoolVar(&opt.asJSON, "json", false, "machine-readable report on stdout")
	fs.IntVar(&opt.examples, "examples", 5, "examples shown per kind of drift")
	fs.DurationVar(&opt.settle, "settle", 30*time.Second, "wait at most this long for the processor and the sink to pass the snapshot (0: do not wait)")
	fs.DurationVar(&opt.wait, "wait", 60*time.Second, "with --apply: wait at most this long for the store to show the repairs")
	fs.IntVar(&opt.maxDeletes, "max-deletes", 100, "with --apply: delete at most this many rows that have no valid event in the log; above it, delete none")
	if code := parseArgs(fs, args, o); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return o.Errorf("reconcile takes no arguments, got %q", fs.Args())
	}
	reg := adapters()
	opt.providers = splitList(*provs)
	for _, p := range opt.providers {
		if _, ok := reg.Get(p); !ok {
			return o.Errorf("unknown provider %q (known: %s)", p, strings.Join(reg.Names(), ", "))
		}
	}
	s, err := loadSettings(o)
	if err != nil {
		return o.Errorf("%v", err)
	}
	rep, err := reconcile(ctx, s, reg, opt, o)
	if err != nil {
		if ctx.Err() != nil {
			return o.Errorf("reconcile interrupted: %v", context.Cause(ctx))
		}
		return o.Errorf("%v", err)
	}
	if opt.asJSON {
		if code := writeJSON(o, rep); code != ExitOK {
			return code
		}
	} else {
		printReconcile(o.Out, rep)
	}
	return rep.ExitCode
}

func reconcile(ctx context.Context, s settings, reg *provider.Registry, opt reconcileOpts, o IO) (*reconcileReport, error) {
	started := time.Now()
	db, err := s.openDB(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	unlock, err := tryLock(ctx, db, reconcileLock)
	if err != nil {
		return nil, err
	}
	if unlock == nil {
		return nil, errors.New("another reconcile is running against this database (it holds the reconcile advisory lock); try again when it is done")
	}
	defer unlock()

	topic := s.topic(kafkax.TopicRaw)
	lc := newLogClient(s.Brokers, topic)
	var since time.Time
	if opt.since.set {
		since = opt.since.t
	}
	snap, err := lc.snapshot(ctx, since, time.Time{})
	if err != nil {
		return nil, err
	}
	rep := &reconcileReport{Topic: topic, Providers: opt.providers, Snapshot: snap, Counts: map[string]int{},
		Examples: map[string][]*finding{}, Applied: opt.apply, Notes: []string{}}
	if opt.since.set {
		rep.Since = &opt.since.t
	}

	x, st, took, err := foldLog(ctx, lc, snap, reg, opt.providers, o)
	if err != nil {
		return nil, err
	}
	rep.Read = readReport{foldStats: st, Reviews: x.keys(), Seconds: took.Seconds()}
	if took > 0 {
		rep.Read.RecordsPerSec = float64(st.Records) / took.Seconds()
	}

	notes, err := settle(ctx, s, db, snap, opt.settle)
	if err != nil {
		return nil, err
	}
	rep.Notes = append(rep.Notes, notes...)

	prog := startProgress(o.Err, "comparing with the store", "rows", 0)
	var d *diff
	if opt.since.set {
		prog.SetTotal(int64(x.keys()))
		d, err = compareKeys(ctx, db, x, prog)
	} else {
		d, err = compareAll(ctx, db, x, opt.providers, prog)
	}
	prog.Done()
	if err != nil {
		if isUndefinedTable(err) {
			return nil, missingTableErr("reviews", "0001_init.sql")
		}
		return nil, err
	}
	if err := excludeInFlight(ctx, lc, snap, d); err != nil {
		return nil, fmt.Errorf("read the log past the snapshot: %w", err)
	}
	d.sort()
	rep.Notes = append(rep.Notes, guardDeletes(d, snap, reg, opt)...)
	rep.StoreRows, rep.InSync, rep.OrphanTombstones, rep.InFlight = d.rows, d.inSync, d.orphans, d.inFlight
	var repairable, unrepairable []*finding
	for _, k := range driftKinds {
		rep.Counts[k] = d.counts[k]
	}
	for _, f := range d.findings {
		if len(rep.Examples[f.Kind]) < opt.examples {
			rep.Examples[f.Kind] = append(rep.Examples[f.Kind], f)
		}
		if f.Repairable {
			repairable = append(repairable, f)
		} else {
			unrepairable = append(unrepairable, f)
		}
	}
	rep.Drift, rep.Repairable = d.drift(), len(repairable)
	if d.inFlight > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d reviews changed after the snapshot and were not judged; the next run checks them", d.inFlight))
	}
	if opt.since.set {
		rep.Notes = append(rep.Notes, "with --since only the reviews changed in the window are judged; extra reviews outside it cannot be told")
	}

	rep.ExitCode = ExitOK
	if rep.Drift > 0 {
		rep.ExitCode = ExitDrift
	}
	if !opt.apply || len(repairable) == 0 {
		if opt.apply && rep.Drift > 0 {
			rep.Repair = &repairOutcome{NotRepaired: []*finding{}}
			rep.Notes = append(rep.Notes, fmt.Sprintf("none of the %d drifted reviews can be repaired through the normal write path", rep.Drift))
			recordRun(ctx, db, rep, started, operator(o))
		}
		return rep, nil
	}

	now := time.Now()
	msgs, target, err := repairMessages(ctx, lc, reg, repairable, now)
	if err != nil {
		return nil, fmt.Errorf("build repairs: %w", err)
	}
	if err := sendRepairs(ctx, s, msgs, o); err != nil {
		return nil, err
	}
	waitStart := time.Now()
	pending, err := awaitRepairs(ctx, db, target, opt.wait, o)
	if err != nil {
		return nil, err
	}
	out := &repairOutcome{Sent: len(msgs), Repaired: len(target) - len(pending), NotRepaired: []*finding{},
		WaitedFor: time.Since(waitStart).Round(time.Millisecond).String()}
	for _, f := range repairable {
		if pending[f.ID] {
			out.NotRepaired = append(out.NotRepaired, f)
		}
	}
	rep.Repair = out
	if len(pending) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d repairs were sent but the store did not show them within %s: is the sink running and caught up?", len(pending), opt.wait))
	}
	if len(pending) == 0 && len(unrepairable) == 0 {
		rep.ExitCode = ExitOK
	} else {
		rep.ExitCode = ExitDrift
	}
	recordRun(ctx, db, rep, started, operator(o))
	return rep, nil
}

// guardDeletes keeps --apply from deleting rows that have no valid event in
// the log when that absence may say more about the log than about the
// row: a provider this build has no adapter for, a log that lost its first
// records, or more such rows than --max-deletes (a wrong TOPIC_NAMESPACE or
// a recreated topic would make every row look extra). It marks those
// findings unrepairable and returns notes.
func guardDeletes(d *diff, snap spans, reg *provider.Registry, opt reconcileOpts) []string {
	var notes []string
	var orphans []*finding
	for _, f := range d.findings {
		if f.partition < 0 && f.Repairable {
			orphans = append(orphans, f)
		}
	}
	if len(orphans) == 0 {
		return nil
	}
	incomplete := ""
	if !opt.since.set {
		for _, s := range snap {
			if s.From > 0 {
				incomplete = fmt.Sprintf("partition %d of the log starts at offset %d", s.Partition, s.From)
				break
			}
		}
	}
	switch {
	case incomplete != "":
		notes = append(notes, fmt.Sprintf("%s: records were removed, so the %d rows with no event in the log are not deleted", incomplete, len(orphans)))
	case len(orphans) > opt.maxDeletes:
		notes = append(notes, fmt.Sprintf("%d rows have no valid event in the log, more than --max-deletes %d: none is deleted "+
			"(check TOPIC_NAMESPACE and %s; raise --max-deletes to go on)", len(orphans), opt.maxDeletes, "reviews.raw.v1"))
	}
	for _, f := range orphans {
		switch {
		case incomplete != "":
			f.Repairable, f.Detail = false, f.Detail+"; not deleted: the log lost its first records"
		case len(orphans) > opt.maxDeletes:
			f.Repairable, f.Detail = false, f.Detail+"; not deleted: more such rows than --max-deletes"
		default:
			if _, ok := reg.Get(f.row.Provider); !ok {
				f.Repairable, f.Detail = false, f.Detail+fmt.Sprintf("; not deleted: this reviewctl has no adapter for provider %q", f.row.Provider)
			}
		}
	}
	return notes
}

// foldLog reads the snapshot's records, every partition at once, and folds
// each partition's records in order into its expected state.
func foldLog(ctx context.Context, lc *logClient, snap spans, reg *provider.Registry, providers []string, o IO) (*expectedState, foldStats, time.Duration, error) {
	start := time.Now()
	now := start.UTC()
	folders := map[int]*folder{}
	for _, sp := range snap {
		folders[sp.Partition] = newFolder(reg, providers, now)
	}
	prog := startProgress(o.Err, "reading "+lc.topic, "records", snap.Records())
	const step = 1024
	err := lc.scan(ctx, snap, scanConfig{}, func(m *kafka.Message) error {
		f := folders[m.Partition]
		f.add(m)
		if f.stats.Records%step == 0 {
			prog.Add(step)
		}
		return nil
	})
	x := &expectedState{parts: map[int]*foldStore{}}
	var st foldStats
	for p, f := range folders {
		fst := f.finish()
		prog.Add(fst.Records % step)
		st.add(fst)
		x.parts[p] = f.store
	}
	prog.Done()
	if err != nil {
		return nil, st, 0, fmt.Errorf("read %s: %w", lc.topic, err)
	}
	return x, st, time.Since(start), nil
}

// recordRun keeps an --apply run in reconcile_runs. A failure to record is
// a note, not an error: the repair itself is done.
func recordRun(ctx context.Context, db *pgxpool.Pool, rep *reconcileReport, started time.Time, by string) {
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
	_, err := db.Exec(ctx, `INSERT INTO reconcile_runs (run_id, started_at, since, providers, snapshot, counts, sent, repaired,
		not_repaired, exit_code, run_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		newRequestID("rc"), started, rep.Since, provs, snap, counts, sent, repaired, notRepaired, rep.ExitCode, by)
	if err != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the run was not recorded in reconcile_runs: %v", err))
	}
}

func printReconcile(w io.Writer, rep *reconcileReport) {
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
		for _, k := range driftKinds {
			fmt.Fprintf(w, "  %-11s %d\n", k, rep.Counts[k])
			for _, f := range rep.Examples[k] {
				fmt.Fprintf(w, "      %s: %s\n", f.ID, f.Detail)
			}
		}
	}
	if r := rep.Repair; r != nil {
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
	} else if rep.Drift > 0 {
		fmt.Fprintf(w, "dry run: nothing changed; run with --apply to repair %d of them\n", rep.Repairable)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
