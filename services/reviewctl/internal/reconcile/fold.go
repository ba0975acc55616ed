package reconcile

import (
	"bytes"
	"math"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// normalize turns a reviews.raw.v1 record into its canonical event with
// provider.NormalizeRecord, the very function the processor calls. reason
// is the processor's dead-letter reason when the record fails.
func normalize(reg *provider.Registry, m *kafka.Message, now time.Time) (ev review.Event, reason string, err error) {
	n := reg.NormalizeRecord(m.Key, m.Value, now)
	return n.Event, string(n.Reason), n.Err
}

// slot is what reconciliation keeps per review key: the processor's state
// entry (whose Offset locates the record that set it, so the full event can
// be read again for a repair without keeping it in memory), the hash of
// what the store can show of that change, and whether the store had a row
// for the key.
type slot struct {
	e dedupe.Entry
	// visible is review.ContentHash of the change with source_updated_at
	// at PostgreSQL's microsecond precision: what a row can hash to. It
	// equals e.Hash unless the provider's time has finer digits.
	visible [dedupe.HashSize]byte
	seen    bool
}

// foldStore holds one partition's expected state: key -> slot. The slots
// hold no pointers, so a store of millions of keys costs the collector
// little. Not safe for concurrent use: one per partition's goroutine.
type foldStore struct{ m map[string]slot }

func newFoldStore() *foldStore { return &foldStore{m: make(map[string]slot, 1024)} }

// Len returns the number of keys.
func (s *foldStore) Len() int { return len(s.m) }

// FoldStats counts what a fold saw.
type FoldStats struct {
	Records       int64            `json:"records"`
	Events        int64            `json:"events"`
	OtherProvider int64            `json:"other_provider"`
	Invalid       map[string]int64 `json:"invalid"`
	Decisions     map[string]int64 `json:"decisions"`
}

func (a *FoldStats) add(b FoldStats) {
	a.Records += b.Records
	a.Events += b.Events
	a.OtherProvider += b.OtherProvider
	for k, v := range b.Invalid {
		if a.Invalid == nil {
			a.Invalid = map[string]int64{}
		}
		a.Invalid[k] += v
	}
	for k, v := range b.Decisions {
		if a.Decisions == nil {
			a.Decisions = map[string]int64{}
		}
		a.Decisions[k] += v
	}
}

// folder re-derives one partition's expected state from its raw records, in
// offset order, with the processor's normalization and decision code. Not
// safe for concurrent use: one per partition.
type folder struct {
	reg *provider.Registry
	// prefixes, when set, keep only records whose key starts with one of
	// them ("{provider}:"); a key is the canonical id, whose prefix is the
	// provider.
	prefixes [][]byte
	store    *foldStore
	now      time.Time
	stats    FoldStats
	decided  [16]int64
}

func newFolder(reg *provider.Registry, providers []string, now time.Time) *folder {
	f := &folder{reg: reg, store: newFoldStore(), now: now, stats: FoldStats{Invalid: map[string]int64{}}}
	for _, p := range providers {
		f.prefixes = append(f.prefixes, []byte(p+":"))
	}
	return f
}

// add folds one record.
func (f *folder) add(m *kafka.Message) {
	f.stats.Records++
	if len(f.prefixes) > 0 && !hasAnyPrefix(m.Key, f.prefixes) {
		f.stats.OtherProvider++
		return
	}
	ev, reason, err := normalize(f.reg, m, f.now)
	if err != nil {
		f.stats.Invalid[reason]++
		return
	}
	f.stats.Events++
	in := dedupe.EntryOf(ev, m.Offset)
	// dedupe.Apply, with one map lookup: the processor's decision. A scan
	// reads each offset once, so no record is ever a Resend.
	cur, seen := f.store.m[ev.Review.ID]
	d := dedupe.Decide(cur.e, seen, in, math.MaxInt64)
	f.decided[d]++
	if d.Changes() {
		sl := slot{e: in, visible: in.Hash}
		if ev.Review.SourceUpdatedAt.Nanosecond()%1000 != 0 {
			sl.visible = visibleHash(ev)
		}
		f.store.m[ev.Review.ID] = sl
	}
}

// visibleHash is the content hash of ev as a row of the store can show it:
// source_updated_at truncated to microseconds.
func visibleHash(ev review.Event) [dedupe.HashSize]byte {
	r := ev.Review
	r.SourceUpdatedAt = r.SourceUpdatedAt.Truncate(time.Microsecond)
	return dedupe.HashOf(review.ContentHash(ev.Op, r))
}

// finish returns the fold's counts.
func (f *folder) finish() FoldStats {
	st := f.stats
	st.Decisions = map[string]int64{}
	for _, d := range dedupe.Decisions {
		if n := f.decided[d]; n > 0 {
			st.Decisions[d.String()] = n
		}
	}
	return st
}

func hasAnyPrefix(b []byte, prefixes [][]byte) bool {
	for _, p := range prefixes {
		if bytes.HasPrefix(b, p) {
			return true
		}
	}
	return false
}
