package processor

import (
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// decideBatch normalizes msgs at offsets from first and decides them.
func decideBatch(t *testing.T, w *worker, first int64, payloads ...string) []record {
	t.Helper()
	p := &Processor{adapters: provider.Default()}
	var recs []record
	for i, pl := range payloads {
		m := rawMessage(t, "generic", "r1", pl, "evt")
		m.Offset = first + int64(i)
		recs = append(recs, p.normalizeOne(m, time.Now()))
	}
	w.overlay.Discard()
	w.decide(recs)
	return recs
}

func decisions(recs []record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		if r.failed() {
			out[i] = "failed:" + r.reason
		} else {
			out[i] = r.decision.String()
		}
	}
	return out
}

func TestDecide(t *testing.T) {
	cases := []struct {
		name    string
		batches [][]string
		want    [][]string
	}{
		{"versions in order, then redelivered",
			[][]string{{upsert("r1", 1, 5), upsert("r1", 2, 6)}, {upsert("r1", 1, 5), upsert("r1", 2, 6)}},
			[][]string{{"new", "update"}, {"stale", "duplicate"}}},
		{"out of order within a batch",
			[][]string{{upsert("r1", 3, 5), upsert("r1", 1, 5), upsert("r1", 2, 5), upsert("r1", 3, 5)}},
			[][]string{{"new", "stale", "stale", "duplicate"}}},
		{"delete keeps a tombstone",
			[][]string{{upsert("r1", 1, 5), deleted("r1", 2)}, {upsert("r1", 2, 9), upsert("r1", 1, 5), upsert("r1", 3, 7)}},
			[][]string{{"new", "update"}, {"conflict_lost", "stale", "update"}}},
		{"same version, other content: one deterministic winner",
			[][]string{{upsert("r1", 4, 5)}, {upsert("r1", 4, 9), upsert("r1", 4, 5), upsert("r1", 4, 9)}},
			nil /* checked below */},
		{"a failed record is skipped",
			[][]string{{`{"type":"review.upserted","data":{}}`, upsert("r1", 1, 5)}},
			[][]string{{"failed:invalid_field", "new"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store := dedupe.NewMemStore(0)
			w := &worker{store: store, overlay: dedupe.NewOverlay(store), confirmed: 0}
			off := int64(0)
			var got [][]string
			for _, b := range c.batches {
				recs := decideBatch(t, w, off, b...)
				w.overlay.Commit()
				off += int64(len(b))
				w.confirmed = off
				got = append(got, decisions(recs))
			}
			if c.want == nil {
				// Exactly one of the two variants is kept, whichever
				// arrives first.
				if g := got[1]; !(g[0] == "conflict_won" && g[1] == "conflict_lost" && g[2] == "duplicate") &&
					!(g[0] == "conflict_lost" && g[1] == "duplicate" && g[2] == "conflict_lost") {
					t.Fatalf("decisions %v", got)
				}
				return
			}
			for i := range c.want {
				for j := range c.want[i] {
					if got[i][j] != c.want[i][j] {
						t.Fatalf("decisions %v, want %v", got, c.want)
					}
				}
			}
		})
	}
}

// A batch whose outputs failed after its changelog was written is retried:
// what it set is resent, nothing older is.
func TestDecideRetryResends(t *testing.T) {
	store := dedupe.NewMemStore(0)
	w := &worker{store: store, overlay: dedupe.NewOverlay(store), confirmed: 10}
	b := []string{upsert("r1", 1, 5), upsert("r1", 3, 5), upsert("r1", 2, 5)}
	first := decisions(decideBatch(t, w, 10, b...))
	w.overlay.Commit() // the changelog acknowledged, the outputs failed
	retry := decisions(decideBatch(t, w, 10, b...))
	if first[0] != "new" || first[1] != "update" || first[2] != "stale" {
		t.Fatalf("first attempt %v", first)
	}
	if retry[0] != "stale" || retry[1] != "resend" || retry[2] != "stale" {
		t.Fatalf("retry %v, want [stale resend stale]", retry)
	}
	// Once the batch is confirmed, the same records are plain duplicates.
	w.confirmed = 13
	again := decisions(decideBatch(t, w, 10, b...))
	if again[1] != "duplicate" {
		t.Fatalf("after confirmation %v", again)
	}
}
