package reconcile

import (
	"fmt"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/kafkalog"
)

// The report's exit codes, the command's: 0 in sync (or every drift
// repaired), 1 drift found or left.
const (
	exitInSync = 0
	exitDrift  = 1
)

// Report is a run's outcome, as `reconcile --json` prints it.
type Report struct {
	Topic            string                `json:"topic"`
	Since            *time.Time            `json:"since,omitempty"`
	Providers        []string              `json:"providers,omitempty"`
	Snapshot         kafkalog.Spans        `json:"snapshot"`
	Read             ReadReport            `json:"read"`
	StoreRows        int                   `json:"store_rows"`
	Counts           map[string]int        `json:"counts"`
	Drift            int                   `json:"drift"`
	Repairable       int                   `json:"repairable"`
	InSync           int                   `json:"in_sync"`
	OrphanTombstones int                   `json:"orphan_tombstones"`
	InFlight         int                   `json:"in_flight"`
	Examples         map[string][]*Finding `json:"examples"`
	Applied          bool                  `json:"applied"`
	Repair           *RepairOutcome        `json:"repair,omitempty"`
	Notes            []string              `json:"notes"`
	ExitCode         int                   `json:"exit_code"`
}

// ReadReport says what reading and folding the log saw.
type ReadReport struct {
	FoldStats
	Reviews       int     `json:"reviews"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_second"`
}

func newReport(topic string, snap kafkalog.Spans, opt Options) *Report {
	return &Report{Topic: topic, Since: opt.Since, Providers: opt.Providers, Snapshot: snap, Counts: map[string]int{},
		Examples: map[string][]*Finding{}, Applied: opt.Apply, Notes: []string{}}
}

// judge fills the report from the comparison: counts, examples, notes and
// the exit code of a dry run. It first keeps --apply from deleting rows
// whose absence from the log is suspect (guardDeletes), then splits the
// findings into those the normal write path can repair and the others.
func (rep *Report) judge(d *diff, snap kafkalog.Spans, reg *provider.Registry, opt Options) (repairable, unrepairable []*Finding) {
	rep.Notes = append(rep.Notes, guardDeletes(d, snap, reg, opt)...)
	rep.StoreRows, rep.InSync, rep.OrphanTombstones, rep.InFlight = d.rows, d.inSync, d.orphans, d.inFlight
	for _, k := range Kinds {
		rep.Counts[k] = d.counts[k]
	}
	for _, f := range d.findings {
		if len(rep.Examples[f.Kind]) < opt.Examples {
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
	if opt.Since != nil {
		rep.Notes = append(rep.Notes, "with --since only the reviews changed in the window are judged; extra reviews outside it cannot be told")
	}
	rep.ExitCode = exitInSync
	if rep.Drift > 0 {
		rep.ExitCode = exitDrift
	}
	return repairable, unrepairable
}

// guardDeletes keeps --apply from deleting rows that have no valid event in
// the log when that absence may say more about the log than about the
// row: a provider this build has no adapter for, a log that lost its first
// records, or more such rows than --max-deletes (a wrong TOPIC_NAMESPACE or
// a recreated topic would make every row look extra). It marks those
// findings unrepairable and returns notes.
func guardDeletes(d *diff, snap kafkalog.Spans, reg *provider.Registry, opt Options) []string {
	var notes []string
	var orphans []*Finding
	for _, f := range d.findings {
		if f.partition < 0 && f.Repairable {
			orphans = append(orphans, f)
		}
	}
	if len(orphans) == 0 {
		return nil
	}
	incomplete := ""
	if opt.Since == nil {
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
	case len(orphans) > opt.MaxDeletes:
		notes = append(notes, fmt.Sprintf("%d rows have no valid event in the log, more than --max-deletes %d: none is deleted "+
			"(check TOPIC_NAMESPACE and %s; raise --max-deletes to go on)", len(orphans), opt.MaxDeletes, "reviews.raw.v1"))
	}
	for _, f := range orphans {
		switch {
		case incomplete != "":
			f.Repairable, f.Detail = false, f.Detail+"; not deleted: the log lost its first records"
		case len(orphans) > opt.MaxDeletes:
			f.Repairable, f.Detail = false, f.Detail+"; not deleted: more such rows than --max-deletes"
		default:
			if _, ok := reg.Get(f.row.Provider); !ok {
				f.Repairable, f.Detail = false, f.Detail+fmt.Sprintf("; not deleted: this reviewctl has no adapter for provider %q", f.row.Provider)
			}
		}
	}
	return notes
}
