package reconcile

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/testlog"
)

func TestFold(t *testing.T) {
	reg := provider.Default()
	msgs := []kafka.Message{
		testlog.RawMessage("a", 1, false, "first", "e1"),
		testlog.RawMessage("a", 3, false, "third", "e2"),
		testlog.RawMessage("a", 2, false, "second, late", "e3"), // stale
		testlog.RawMessage("a", 3, false, "third", "e4"),        // duplicate
		testlog.RawMessage("b", 1, false, "b1", "e5"),
		testlog.RawMessage("b", 2, true, "", "e6"),    // delete
		testlog.RawMessage("b", 1, false, "b1", "e7"), // older upsert cannot revive it
		testlog.RawMessage("c", 1, false, "c1", "e8"),
		{Key: []byte("generic:zz"), Value: []byte(`not json`)},
	}
	bad := testlog.RawMessage("d", 1, false, "d", "e9")
	bad.Key = []byte("generic:other") // key is not the canonical id
	msgs = append(msgs, bad)
	f := newFolder(reg, nil, testlog.T0)
	for i := range msgs {
		msgs[i].Offset = int64(i)
		f.add(&msgs[i])
	}
	st := f.finish()
	if st.Records != 10 || st.Events != 8 || st.Invalid["invalid_envelope"] != 1 || st.Invalid["key_mismatch"] != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if st.Decisions["stale"] != 2 || st.Decisions["duplicate"] != 1 || st.Decisions["new"] != 3 || st.Decisions["update"] != 2 {
		t.Fatalf("decisions = %+v", st.Decisions)
	}
	want := map[string]struct {
		v       int64
		deleted bool
		offset  int64
	}{"generic:a": {3, false, 1}, "generic:b": {2, true, 5}, "generic:c": {1, false, 7}}
	if f.store.Len() != len(want) {
		t.Fatalf("%d keys, want %d", f.store.Len(), len(want))
	}
	for k, w := range want {
		sl := f.store.m[k]
		if sl.e.Version != w.v || sl.e.Deleted != w.deleted || sl.e.Offset != w.offset {
			t.Errorf("%s: got %+v, want %+v", k, sl.e, w)
		}
		if sl.visible != sl.e.Hash {
			t.Errorf("%s: visible hash differs from the entry's with a whole-second time", k)
		}
	}
	// Only one provider's keys.
	g := newFolder(reg, []string{"cinescore"}, testlog.T0)
	for i := range msgs {
		g.add(&msgs[i])
	}
	if st := g.finish(); st.OtherProvider != 10 || g.store.Len() != 0 {
		t.Fatalf("provider filter: %+v, %d keys", st, g.store.Len())
	}
}

// The fold and the processor's decision code agree on conflicts: the same
// version with other content is won by the greater entry in dedupe's order.
func TestFoldConflictWinner(t *testing.T) {
	reg := provider.Default()
	m1 := testlog.RawMessage("a", 4, false, "one variant", "e1")
	m2 := testlog.RawMessage("a", 4, false, "another variant", "e2")
	ev1, _, _ := normalize(reg, &m1, testlog.T0)
	ev2, _, _ := normalize(reg, &m2, testlog.T0)
	want := dedupe.EntryOf(ev1, 0)
	if e2 := dedupe.EntryOf(ev2, 1); e2.Compare(want) > 0 {
		want = e2
	}
	for _, order := range [][]kafka.Message{{m1, m2}, {m2, m1}} {
		f := newFolder(reg, nil, testlog.T0)
		for i := range order {
			order[i].Offset = int64(i)
			f.add(&order[i])
		}
		if got := f.store.m["generic:a"].e; !got.SameChange(want) {
			t.Fatalf("winner %s, want %s", got.HashString(), want.HashString())
		}
	}
}

func TestVisibleHash(t *testing.T) {
	ev := review.Event{Op: review.OpUpsert, Review: review.Review{ID: "generic:a", Version: 1,
		SourceUpdatedAt: testlog.T0.Add(1500 * time.Nanosecond)}}
	r := ev.Review
	r.SourceUpdatedAt = testlog.T0.Add(time.Microsecond)
	if visibleHash(ev) != dedupe.HashOf(review.ContentHash(ev.Op, r)) {
		t.Fatal("visible hash must use the time at microsecond precision")
	}
}

// benchLog returns n raw records over keys distinct reviews, each review's
// versions in order with one duplicate in ten, bodies of about 400 bytes.
func benchLog(n, keys int) []kafka.Message {
	body := ""
	for len(body) < 400 {
		body += "A quietly devastating film about hope. "
	}
	out := make([]kafka.Message, n)
	for i := range out {
		k := i % keys
		v := int64(i/keys + 1)
		if i%10 == 9 {
			v = max(1, v-1)
		}
		out[i] = testlog.RawMessage(fmt.Sprintf("r-%010d", k), v, false, body, fmt.Sprintf("evt_%d", i))
		out[i].Offset = int64(i)
	}
	return out
}

// BenchmarkFold measures reconciliation's fold alone (no I/O): envelope,
// adapter, dedupe decision, per record; events/s is per core.
func BenchmarkFold(b *testing.B) {
	msgs := benchLog(200_000, 50_000)
	reg := provider.Default()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	start := time.Now()
	var f *folder
	for b.Loop() {
		if n%len(msgs) == 0 {
			f = newFolder(reg, nil, testlog.T0)
		}
		f.add(&msgs[n%len(msgs)])
		n++
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkFoldBytesPerKey measures the heap the expected state holds per
// review key.
func BenchmarkFoldBytesPerKey(b *testing.B) {
	const keys = 200_000
	msgs := benchLog(keys, keys)
	reg := provider.Default()
	var perKey float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f := newFolder(reg, nil, testlog.T0)
		for i := range msgs {
			f.add(&msgs[i])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perKey = float64(after.HeapAlloc-before.HeapAlloc) / keys
		runtime.KeepAlive(f)
	}
	b.ReportMetric(perKey, "bytes/key")
}
