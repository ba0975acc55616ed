package dedupe

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("dedupe.seed", 0, "seed of the property tests (0: from the clock)")

func seed(t *testing.T) uint64 {
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun: go test ./dedupe -run '^%s$' -dedupe.seed=%d)", s, t.Name(), s)
	return s
}

type change struct {
	key string
	e   Entry
}

// history makes a random input log: per key a version history with
// deletes, revivals and same-version conflicting variants, every change
// delivered one to three times, the whole log shuffled (or, sometimes, in
// order). Each change's Offset is its position in the log. best is the
// winner per key.
func history(r *rand.Rand) (log []change, best map[string]Entry) {
	best = map[string]Entry{}
	keys := 1 + r.IntN(40)
	for k := range keys {
		key := fmt.Sprintf("generic:r%d", k)
		versions := 1 + r.IntN(8)
		for v := int64(1); v <= int64(versions); v++ {
			if r.IntN(5) == 0 && v < int64(versions) {
				continue // a version the provider never sent
			}
			variants := 1
			if r.IntN(10) == 0 {
				variants = 2 // a same-version conflict
			}
			for range variants {
				e := Entry{Version: v, Deleted: r.IntN(6) == 0}
				for i := range e.Hash {
					e.Hash[i] = byte(r.IntN(256))
				}
				for range 1 + r.IntN(3) {
					log = append(log, change{key, e})
				}
				if b, ok := best[key]; !ok || e.Compare(b) > 0 {
					best[key] = e
				}
			}
		}
	}
	if r.IntN(4) != 0 {
		r.Shuffle(len(log), func(i, j int) { log[i], log[j] = log[j], log[i] })
	}
	for i := range log {
		log[i].e.Offset = int64(i)
	}
	return log, best
}

// checkEmitted holds the emitted stream per key to the contract: never an
// older change after a newer one (a strictly increasing stream when strict,
// else repeats of the last one are allowed), ending with the best change.
func checkEmitted(t *testing.T, round int, emitted []change, best map[string]Entry, strict bool) {
	t.Helper()
	last := map[string]Entry{}
	for i, c := range emitted {
		if prev, ok := last[c.key]; ok {
			cmp := c.e.Compare(prev)
			if c.e.Version < prev.Version || cmp < 0 || (strict && cmp == 0) {
				t.Fatalf("round %d: emission %d for %s is %+v after %+v", round, i, c.key, c.e, prev)
			}
		}
		last[c.key] = c.e
	}
	for key, b := range best {
		got, ok := last[key]
		if !ok {
			t.Fatalf("round %d: %s never emitted, want %+v", round, key, b)
		}
		if !got.SameChange(b) {
			t.Fatalf("round %d: %s ends at %+v, want the highest %+v", round, key, got, b)
		}
	}
	// A consumer applying the outputs in order, last write wins, holds
	// the highest version per key, deleted or not as its last change.
	applied := map[string]Entry{}
	for _, c := range emitted {
		applied[c.key] = c.e
	}
	for key, b := range best {
		if applied[key].Version != b.Version || applied[key].Deleted != b.Deleted {
			t.Fatalf("round %d: consumer holds %+v for %s, want version %d deleted=%v", round, applied[key], key, b.Version, b.Deleted)
		}
	}
}

// Apply over one store, change by change: each change emitted at most once,
// in strictly increasing order per key, ending with the highest.
func TestPropertyHighestVersionWins(t *testing.T) {
	r := rand.New(rand.NewPCG(seed(t), 1))
	for round := range 500 {
		log, best := history(r)
		s := NewMemStore(0)
		var emitted []change
		for _, c := range log {
			if Apply(s, c.key, c.e, 0).Emit() {
				emitted = append(emitted, c)
			}
		}
		checkEmitted(t, round, emitted, best, true)
		if s.Len() != len(best) {
			t.Fatalf("round %d: %d keys in state, want %d", round, s.Len(), len(best))
		}
	}
}

// The processor's protocol: a batch is decided in an overlay; its changes
// are written to the changelog, then its outputs, then its offset is
// committed. A write may fail (the batch is retried in process, the state
// mirroring what the changelog acknowledged) or the process may crash
// between any two writes (the next owner restores the state from the
// changelog and resumes at the committed offset). The emitted stream may
// repeat a change but never goes back to an older one, and ends right.
func TestPropertyCrashesAndRestores(t *testing.T) {
	r := rand.New(rand.NewPCG(seed(t), 2))
	resends := 0
	for round := range 500 {
		log, best := history(r)
		changelog := map[string]Entry{} // compacted: latest per key
		committed := int64(0)
		var emitted []change
		restore := func() *MemStore {
			s := NewMemStore(len(changelog))
			for k, e := range changelog {
				s.Put(k, e)
			}
			return s
		}
		s := restore()
		confirmed := committed
		end := int64(0)
		for committed < int64(len(log)) {
			if end <= committed { // a new batch; a retried one keeps its end
				end = min(int64(len(log)), committed+1+int64(r.IntN(8)))
			}
			o := NewOverlay(s)
			var out []change
			for _, c := range log[committed:end] {
				d := Apply(o, c.key, c.e, confirmed)
				if d.Emit() {
					out = append(out, c)
				}
				if d == Resend {
					resends++
				}
			}
			writeChangelog := func() {
				for _, c := range o.Staged() {
					changelog[c.Key] = c.Entry
				}
			}
			switch r.IntN(8) {
			case 0: // crash before any write
				s, confirmed, end = restore(), committed, 0
				continue
			case 1: // changelog write failed but reached the broker; retry in process
				writeChangelog()
				o.Discard()
				continue
			case 2: // changelog written, crash before the outputs
				writeChangelog()
				s, confirmed, end = restore(), committed, 0
				continue
			case 3: // changelog written, output write failed (maybe half-way); retry in process
				writeChangelog()
				o.Commit()
				emitted = append(emitted, out[:r.IntN(len(out)+1)]...)
				continue
			case 4: // everything written, crash before the commit
				writeChangelog()
				emitted = append(emitted, out...)
				s, confirmed, end = restore(), committed, 0
				continue
			}
			writeChangelog()
			o.Commit()
			emitted = append(emitted, out...)
			committed, confirmed = end, end
		}
		checkEmitted(t, round, emitted, best, false)
	}
	if resends == 0 {
		t.Fatal("no change was ever resent: the crash cases did not happen")
	}
}
