package reconcile

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/kafkalog"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/testlog"
)

// memLog is a raw log in memory, one partition.
type memLog struct{ msgs []kafka.Message }

func (l *memLog) Topic() string { return "reviews.raw.v1" }

func (l *memLog) Snapshot(context.Context, time.Time, time.Time) (kafkalog.Spans, error) {
	return kafkalog.Spans{{Partition: 0, From: 0, To: int64(len(l.msgs))}}, nil
}

func (l *memLog) Scan(_ context.Context, ss kafkalog.Spans, fn func(*kafka.Message) error) error {
	for _, s := range ss {
		for o := s.From; o < s.To; o++ {
			m := l.msgs[o]
			if err := fn(&m); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *memLog) Fetch(_ context.Context, _ int, offsets []int64, fn func(*kafka.Message) error) error {
	for _, o := range offsets {
		m := l.msgs[o]
		if err := fn(&m); err != nil {
			return err
		}
	}
	return nil
}

func (l *memLog) add(ms ...kafka.Message) {
	for _, m := range ms {
		m.Offset = int64(len(l.msgs))
		l.msgs = append(l.msgs, m)
	}
}

// memStore is the reviews table in memory; a Sender that plays the sink
// applies repairs to it.
type memStore struct {
	mu     sync.Mutex
	rows   map[string]*Row
	locked bool
	runs   int
}

func (s *memStore) Lock(context.Context) (func(), error) {
	if s.locked {
		return nil, nil
	}
	return func() {}, nil
}

func (s *memStore) Rows(_ context.Context, _ []string, fn func(*Row) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rows {
		c := *r
		if err := fn(&c); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) RowsByID(ctx context.Context, ids []string, fn func(*Row) error) error {
	return s.Rows(ctx, nil, func(r *Row) error {
		if slices.Contains(ids, r.ID) {
			return fn(r)
		}
		return nil
	})
}

func (s *memStore) RecordRun(context.Context, *Report, time.Time, string) error { s.runs++; return nil }

// put writes ev as the sink would, unguarded.
func (s *memStore) put(ev review.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ev.Review
	s.rows[r.ID] = &Row{ID: r.ID, Provider: r.Provider, ExternalID: r.ExternalID, MovieID: r.MovieID, Author: r.Author,
		Title: r.Title, Body: r.Body, Language: r.Language, URL: r.URL, Rating: r.Rating, Version: r.Version,
		Deleted: ev.Op == review.OpDelete, ContentHash: review.ContentHash(ev.Op, r), SourceUpdatedAt: r.SourceUpdatedAt}
}

// Write plays the sink: it applies the repairs sent to the store.
func (s *memStore) Write(_ context.Context, topic kafkax.Topic, msgs ...kafka.Message) error {
	for _, m := range msgs {
		var ev review.Event
		if err := json.Unmarshal(m.Value, &ev); err != nil {
			return err
		}
		s.put(ev)
	}
	return nil
}

// idle is a pipeline that never ran: settle does not wait for it.
type idle struct{}

func (idle) ProcessorOffsets(context.Context, []int) (map[int]int64, error) { return nil, nil }
func (idle) NormalizedEnds(context.Context) (kafkalog.Spans, error)         { return nil, nil }
func (idle) SinkOffsets(context.Context) (map[int]int64, error)             { return nil, nil }

func TestReconcilerRun(t *testing.T) {
	reg := provider.Default()
	log := &memLog{}
	st := &memStore{rows: map[string]*Row{}}
	for _, id := range []string{"a", "b", "c"} {
		for v := int64(1); v <= 2; v++ {
			m := testlog.RawMessage(id, v, false, "body "+id, "evt_"+id)
			log.add(m)
			if ev, _, err := normalize(reg, &m, testlog.T0); err == nil && !(id == "b" && v == 2) && id != "c" {
				st.put(ev) // b stays at v1 (stale); c has no row (missing)
			}
		}
	}
	rc := &Reconciler{Log: log, Store: st, Pipeline: idle{}, Repairs: st, Providers: reg, PollEvery: time.Millisecond}
	opt := Options{Examples: 5, Settle: time.Second, Wait: time.Second, MaxDeletes: 100}
	rep, err := rc.Run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range Kinds {
		for _, f := range rep.Examples[k] {
			ids = append(ids, f.Kind+":"+f.ID)
		}
	}
	sort.Strings(ids)
	if rep.ExitCode != exitDrift || rep.Drift != 2 || rep.InSync != 1 || !slices.Equal(ids, []string{"missing:generic:c", "stale:generic:b"}) ||
		rep.Repair != nil || st.runs != 0 || !strings.Contains(strings.Join(rep.Notes, " "), "has no committed offsets") {
		t.Fatalf("dry run: exit %d, drift %d, in sync %d, %v, notes %v", rep.ExitCode, rep.Drift, rep.InSync, ids, rep.Notes)
	}

	opt.Apply = true
	if rep, err = rc.Run(context.Background(), opt); err != nil {
		t.Fatal(err)
	}
	if rep.ExitCode != exitInSync || rep.Repair == nil || rep.Repair.Sent != 2 || rep.Repair.Repaired != 2 || st.runs != 1 {
		t.Fatalf("--apply: exit %d, repair %+v, runs %d", rep.ExitCode, rep.Repair, st.runs)
	}
	opt.Apply = false
	if rep, err = rc.Run(context.Background(), opt); err != nil || rep.Drift != 0 || rep.InSync != 3 {
		t.Fatalf("after the repair: %v, drift %d, in sync %d", err, rep.Drift, rep.InSync)
	}

	st.locked = true
	if _, err := rc.Run(context.Background(), opt); err != ErrLocked {
		t.Fatalf("locked: %v, want ErrLocked", err)
	}
}

func TestLags(t *testing.T) {
	raw := kafkalog.Spans{{Partition: 0, From: 0, To: 10}, {Partition: 1, From: 5, To: 8}}
	for _, c := range []struct {
		name      string
		committed map[int]int64
		want      int64
	}{
		{"caught up", map[int]int64{0: 10, 1: 8}, 0},
		{"past the snapshot", map[int]int64{0: 12, 1: 9}, 0},
		{"behind", map[int]int64{0: 7, 1: 8}, 3},
		{"a partition without offsets counts whole", map[int]int64{0: 10}, 8},
	} {
		if got := processorLag(raw, c.committed); got != c.want {
			t.Errorf("processorLag %s: %d, want %d", c.name, got, c.want)
		}
	}
	for _, c := range []struct {
		name string
		next map[int]int64
		want int64
	}{
		{"caught up", map[int]int64{0: 10, 1: 8}, 0},
		{"records below From are gone", map[int]int64{0: 10}, 3},
		{"behind", map[int]int64{0: 4, 1: 7}, 7},
	} {
		if got := sinkLag(raw, c.next); got != c.want {
			t.Errorf("sinkLag %s: %d, want %d", c.name, got, c.want)
		}
	}
}

func TestTailAfter(t *testing.T) {
	snap := kafkalog.Spans{{Partition: 0, From: 0, To: 10}, {Partition: 1, From: 0, To: 4}}
	now := kafkalog.Spans{{Partition: 0, From: 0, To: 12}, {Partition: 1, From: 0, To: 4}, {Partition: 2, From: 3, To: 5}}
	want := kafkalog.Spans{{Partition: 0, From: 10, To: 12}, {Partition: 2, From: 3, To: 5}}
	if got := tailAfter(snap, now); !slices.Equal(got, want) {
		t.Fatalf("tailAfter = %v, want %v", got, want)
	}
}

func TestGuardDeletes(t *testing.T) {
	reg := provider.Default()
	orphan := func(prov string) *Finding {
		return &Finding{Kind: Extra, ID: prov + ":x", Repairable: true, partition: -1, row: &Row{ID: prov + ":x", Provider: prov}}
	}
	full := kafkalog.Spans{{Partition: 0, From: 0, To: 5}}
	cut := kafkalog.Spans{{Partition: 0, From: 2, To: 5}}
	since := time.Now()
	for _, c := range []struct {
		name       string
		findings   []*Finding
		snap       kafkalog.Spans
		opt        Options
		repairable bool
		note       string
	}{
		{"deleted", []*Finding{orphan("generic")}, full, Options{MaxDeletes: 1}, true, ""},
		{"no adapter", []*Finding{orphan("nobody")}, full, Options{MaxDeletes: 1}, false, ""},
		{"log lost its start", []*Finding{orphan("generic")}, cut, Options{MaxDeletes: 1}, false, "records were removed"},
		{"a window starts anywhere", []*Finding{orphan("generic")}, cut, Options{MaxDeletes: 1, Since: &since}, true, ""},
		{"over --max-deletes", []*Finding{orphan("generic"), orphan("generic")}, full, Options{MaxDeletes: 1}, false, "--max-deletes 1"},
	} {
		d := &diff{findings: c.findings}
		notes := strings.Join(guardDeletes(d, c.snap, reg, c.opt), " ")
		if d.findings[0].Repairable != c.repairable || (c.note == "") != (notes == "") || !strings.Contains(notes, c.note) {
			t.Errorf("%s: repairable %v, notes %q; want %v, %q", c.name, d.findings[0].Repairable, notes, c.repairable, c.note)
		}
	}
}
