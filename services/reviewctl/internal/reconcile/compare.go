package reconcile

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/progress"
)

// The kinds of drift reconcile reports.
const (
	// Missing: the log has the review (live or deleted), the store has no
	// row for it.
	Missing = "missing"
	// Stale: the store's version is lower than the log's.
	Stale = "stale"
	// Extra: the store shows a review that the log does not: no valid
	// event for it, or the log deleted it at the row's version.
	Extra = "extra"
	// Mismatched: same version, other content (or content hash, or
	// deletion) than the log's winning change.
	Mismatched = "mismatched"
	// Ahead: the store's version is higher than any valid event of the log
	// up to the snapshot. The version guard keeps such a row, so no event
	// through the normal path can repair it.
	Ahead = "ahead"
)

// Kinds lists the kinds of drift in report order.
var Kinds = []string{Missing, Stale, Extra, Mismatched, Ahead}

// Row is a row of the reviews table as reconcile reads it; the Store fills
// it, SourceUpdatedAt in UTC.
type Row struct {
	ID, Provider, ExternalID, MovieID  string
	Author, Title, Body, Language, URL string
	Rating                             *int
	Version                            int64
	Deleted                            bool
	ContentHash                        string
	SourceUpdatedAt                    time.Time
}

// entry is the row as a dedupe entry: its version, deletion and content
// hash (the content_hash column, or the hash of its columns when the
// column is empty).
func (r *Row) entry() dedupe.Entry {
	e := dedupe.Entry{Version: r.Version, Deleted: r.Deleted, Offset: -1}
	if r.ContentHash != "" {
		e.Hash = dedupe.HashOf(r.ContentHash)
	} else {
		e.Hash = r.columnsHash()
	}
	return e
}

// columnsHash is review.ContentHash of what the row shows (an upsert).
func (r *Row) columnsHash() [dedupe.HashSize]byte {
	return dedupe.HashOf(review.ContentHash(review.OpUpsert, review.Review{
		ID: r.ID, MovieID: r.MovieID, Author: r.Author, Rating: r.Rating, Title: r.Title, Body: r.Body,
		Language: r.Language, URL: r.URL, Version: r.Version, SourceUpdatedAt: r.SourceUpdatedAt,
	}))
}

// View is an entry as reports show it.
type View struct {
	Version     int64  `json:"version"`
	Deleted     bool   `json:"deleted"`
	ContentHash string `json:"content_hash,omitempty"`
}

func viewOf(e dedupe.Entry) *View {
	return &View{Version: e.Version, Deleted: e.Deleted, ContentHash: e.HashString()}
}

// verdict is what classify makes of one review.
type verdict struct {
	kind       string // "" when in sync
	repairable bool
	detail     string
}

// classify compares the log's expected entry of a review (nil: no valid
// event) with its store row (nil: no row). Repairable means an event sent
// through reviews.normalized.v1 wins the sink's version guard, which keeps
// the greatest change in dedupe's order (higher version, then a delete over
// an upsert, then the greater content hash), as the processor does.
func classify(exp *slot, row *Row) verdict {
	switch {
	case exp == nil && row == nil:
		return verdict{}
	case exp == nil:
		if row.Deleted {
			return verdict{} // an orphan tombstone shows nothing to readers
		}
		return verdict{Extra, true, fmt.Sprintf("live at v%d in the store, no valid event in the log", row.Version)}
	case row == nil:
		if exp.e.Deleted {
			return verdict{Missing, true, fmt.Sprintf("no row; the log deleted it at v%d (the tombstone is missing)", exp.e.Version)}
		}
		return verdict{Missing, true, fmt.Sprintf("no row; the log has v%d", exp.e.Version)}
	}
	st := row.entry()
	switch {
	case exp.e.Version > row.Version:
		return verdict{Stale, true, fmt.Sprintf("store v%d, log v%d", row.Version, exp.e.Version)}
	case exp.e.Version < row.Version:
		return verdict{Ahead, false, fmt.Sprintf("store v%d is newer than the log's v%d; the version guard keeps it, so no event can repair it "+
			"(find where v%d came from; to restore the log's, delete the row and run reconcile --apply)", row.Version, exp.e.Version, row.Version)}
	case exp.e.Deleted && !row.Deleted:
		return verdict{Extra, true, fmt.Sprintf("live in the store; the log deleted it at v%d", row.Version)}
	case !exp.e.Deleted && row.Deleted:
		return verdict{Mismatched, false, fmt.Sprintf("deleted in the store at v%d where the log has it live; a delete outranks an upsert of its version, "+
			"so no event can repair it (delete the row and run reconcile --apply)", row.Version)}
	case exp.e.Deleted:
		if row.ContentHash == "" || st.Hash == exp.e.Hash {
			return verdict{}
		}
		return mismatch(exp, st, "the tombstone's content_hash differs from the log's delete")
	}
	contentOK := row.columnsHash() == exp.visible
	hashOK := row.ContentHash == "" || st.Hash == exp.e.Hash
	switch {
	case contentOK && hashOK:
		return verdict{}
	case contentOK:
		return mismatch(exp, st, "same content, but the content_hash column differs from the log's")
	}
	return mismatch(exp, st, "the row's content differs from the log's change of that version")
}

func mismatch(exp *slot, st dedupe.Entry, what string) verdict {
	switch exp.e.Compare(st) {
	case 1:
		return verdict{Mismatched, true, fmt.Sprintf("v%d: %s", st.Version, what)}
	case 0:
		return verdict{Mismatched, false, fmt.Sprintf("v%d: %s; the row carries the log's version and content hash, so the version guard "+
			"takes the log's event for the same change and keeps the row (delete the row and run reconcile --apply)", st.Version, what)}
	}
	return verdict{Mismatched, false, fmt.Sprintf("v%d: %s; the row's content hash outranks the log's in the version guard's order, "+
		"so no event can repair it (delete the row and run reconcile --apply)", st.Version, what)}
}

// Finding is one drifted review, as reports show it.
type Finding struct {
	Kind       string `json:"kind"`
	ID         string `json:"id"`
	Expected   *View  `json:"expected"`
	Store      *View  `json:"store"`
	Repairable bool   `json:"repairable"`
	Detail     string `json:"detail"`

	// where the expected change sits in the raw log (partition -1: no
	// valid event; a repair deletes the row at its version)
	partition int
	offset    int64
	exp       slot
	row       *Row
}

// expectedState is the fold's result: one store per partition.
type expectedState struct {
	parts map[int]*foldStore
}

// lookup finds a key's expected slot. A key lives on one partition; should
// it appear on several (the partition count changed), the greatest change
// in dedupe's order wins, as the sink's guard would keep it.
func (x *expectedState) lookup(id string) (int, slot, bool) {
	best, bp, found := slot{}, -1, false
	for p, st := range x.parts {
		if sl, ok := st.m[id]; ok && (!found || sl.e.Compare(best.e) > 0) {
			best, bp, found = sl, p, true
		}
	}
	return bp, best, found
}

func (x *expectedState) markSeen(id string) {
	for _, st := range x.parts {
		if sl, ok := st.m[id]; ok {
			sl.seen = true
			st.m[id] = sl
		}
	}
}

// keys counts the distinct keys (a key on two partitions counts twice; rare).
func (x *expectedState) keys() int {
	n := 0
	for _, st := range x.parts {
		n += st.Len()
	}
	return n
}

// diff is the comparison's outcome.
type diff struct {
	counts   map[string]int
	inSync   int
	orphans  int // tombstones in the store with no valid event in the log
	rows     int
	inFlight int // drifted reviews that changed after the snapshot: not judged
	findings []*Finding
}

func newDiff() *diff { return &diff{counts: map[string]int{}} }

func (d *diff) add(id string, part int, exp *slot, row *Row) {
	v := classify(exp, row)
	if v.kind == "" {
		if exp == nil && row != nil && row.Deleted {
			d.orphans++
		} else {
			d.inSync++
		}
		return
	}
	f := &Finding{Kind: v.kind, ID: id, Repairable: v.repairable, Detail: v.detail, partition: -1, row: row}
	if exp != nil {
		f.Expected, f.partition, f.offset, f.exp = viewOf(exp.e), part, exp.e.Offset, *exp
	}
	if row != nil {
		f.Store = viewOf(row.entry())
	}
	d.findings = append(d.findings, f)
	d.counts[v.kind]++
}

// drift is the number of drifted reviews.
func (d *diff) drift() int { return len(d.findings) }

func (d *diff) sort() {
	sort.Slice(d.findings, func(i, j int) bool {
		if d.findings[i].Kind != d.findings[j].Kind {
			return kindRank(d.findings[i].Kind) < kindRank(d.findings[j].Kind)
		}
		return d.findings[i].ID < d.findings[j].ID
	})
}

func kindRank(k string) int {
	for i, x := range Kinds {
		if x == k {
			return i
		}
	}
	return len(Kinds)
}

// addUnseen reports the expected reviews that had no row in the store.
func (d *diff) addUnseen(x *expectedState) {
	for p, st := range x.parts {
		for id, sl := range st.m {
			if !sl.seen {
				d.add(id, p, &sl, nil)
			}
		}
	}
}

// compareAll streams every row of the store (of the given providers) and
// classifies it, then reports the expected reviews that had no row.
func compareAll(ctx context.Context, st Store, x *expectedState, providers []string, prog progress.Tracker) (*diff, error) {
	d := newDiff()
	err := st.Rows(ctx, providers, func(r *Row) error {
		d.rows++
		prog.Add(1)
		p, sl, ok := x.lookup(r.ID)
		if ok {
			x.markSeen(r.ID)
			d.add(r.ID, p, &sl, r)
		} else {
			d.add(r.ID, -1, nil, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	d.addUnseen(x)
	return d, nil
}

// lookupChunk is how many ids one RowsByID call asks for.
const lookupChunk = 5000

// compareKeys looks up only the expected keys (reconcile --since: the
// window says nothing of the other rows, so no extra review can be told
// from them).
func compareKeys(ctx context.Context, st Store, x *expectedState, prog progress.Tracker) (*diff, error) {
	d := newDiff()
	ids := make([]string, 0, lookupChunk)
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		err := st.RowsByID(ctx, ids, func(r *Row) error {
			d.rows++
			p, sl, _ := x.lookup(r.ID)
			x.markSeen(r.ID)
			d.add(r.ID, p, &sl, r)
			return nil
		})
		if err != nil {
			return err
		}
		prog.Add(int64(len(ids)))
		ids = ids[:0]
		return nil
	}
	for _, st := range x.parts {
		for id := range st.m {
			ids = append(ids, id)
			if len(ids) == lookupChunk {
				if err := flush(); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	d.addUnseen(x)
	return d, nil
}
