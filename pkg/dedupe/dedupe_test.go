package dedupe

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/review"
)

func h(b byte) [HashSize]byte {
	var x [HashSize]byte
	x[0] = b
	return x
}

func up(v int64, hash byte) Entry { return Entry{Version: v, Hash: h(hash), Offset: -1} }
func del(v int64, hash byte) Entry {
	return Entry{Version: v, Hash: h(hash), Deleted: true, Offset: -1}
}

func at(e Entry, offset int64) Entry { e.Offset = offset; return e }

func TestDecide(t *testing.T) {
	cases := []struct {
		name      string
		cur       Entry
		seen      bool
		in        Entry
		confirmed int64
		want      Decision
	}{
		{"first upsert of a key", Entry{}, false, up(3, 1), 0, New},
		{"first change is a delete", Entry{}, false, del(2, 1), 0, New},
		{"newer version", up(3, 1), true, up(4, 9), 0, Update},
		{"newer version with the same hash", up(3, 1), true, up(4, 1), 0, Update},
		{"exact duplicate", up(3, 1), true, up(3, 1), 0, Duplicate},
		{"older version", up(3, 1), true, up(2, 9), 0, Stale},
		{"much older version", up(30, 1), true, up(1, 1), 0, Stale},
		{"same version, greater hash wins", up(3, 1), true, up(3, 2), 0, ConflictWon},
		{"same version, smaller hash loses", up(3, 2), true, up(3, 1), 0, ConflictLost},
		{"delete at a newer version", up(3, 1), true, del(4, 0), 0, Update},
		{"delete at the same version removes", up(3, 9), true, del(3, 0), 0, ConflictWon},
		{"older delete is stale", up(3, 1), true, del(2, 9), 0, Stale},
		{"repeated delete", del(3, 1), true, del(3, 1), 0, Duplicate},
		{"upsert older than a delete does not revive", del(5, 1), true, up(4, 9), 0, Stale},
		{"upsert at the delete's version does not revive", del(5, 1), true, up(5, 9), 0, ConflictLost},
		{"upsert newer than the delete revives", del(5, 1), true, up(6, 0), 0, Update},
		{"two deletes of one version: greater hash wins", del(5, 1), true, del(5, 2), 0, ConflictWon},
		{"the record that set an unconfirmed entry is resent", at(up(3, 1), 10), true, at(up(3, 1), 10), 10, Resend},
		{"... also a delete", at(del(3, 1), 12), true, at(del(3, 1), 12), 10, Resend},
		{"the record that set a confirmed entry is a duplicate", at(up(3, 1), 9), true, at(up(3, 1), 9), 10, Duplicate},
		{"another record with the same change is a duplicate", at(up(3, 1), 10), true, at(up(3, 1), 11), 10, Duplicate},
		{"an unknown offset is never resent", up(3, 1), true, up(3, 1), -5, Duplicate},
		{"an older record before the unconfirmed entry stays stale", at(up(3, 1), 10), true, at(up(2, 1), 9), 5, Stale},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Decide(c.cur, c.seen, c.in, c.confirmed)
			if got != c.want {
				t.Fatalf("Decide(%+v, %v, %+v, %d) = %v, want %v", c.cur, c.seen, c.in, c.confirmed, got, c.want)
			}
			s := NewMemStore(0)
			if c.seen {
				s.Put("k", c.cur)
			}
			if d := Apply(s, "k", c.in, c.confirmed); d != got {
				t.Fatalf("Apply decided %v, Decide %v", d, got)
			}
			want := c.cur
			if got.Changes() {
				want = c.in
			}
			if e, _ := s.Get("k"); e != want {
				t.Fatalf("after %v the state holds %+v, want %+v", got, e, want)
			}
			// Conflicts must be symmetric: exactly one side wins.
			if c.seen && got.Conflict() {
				if back := Decide(c.in, true, c.cur, c.confirmed); back.Emit() == got.Emit() {
					t.Fatalf("conflict not symmetric: %v one way, %v the other", got, back)
				}
			}
		})
	}
}

func TestDecisionLabels(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range Decisions {
		s := d.String()
		if s == "" || strings.Contains(s, "(") || seen[s] {
			t.Fatalf("decision %d has label %q", d, s)
		}
		seen[s] = true
	}
	emitted, changes := 0, 0
	for _, d := range Decisions {
		if d.Emit() {
			emitted++
		}
		if d.Changes() {
			changes++
		}
	}
	if emitted != 4 || changes != 3 {
		t.Fatalf("%d decisions emit and %d change the state, want 4 (new, update, conflict_won, resend) and 3", emitted, changes)
	}
}

func TestEntryOfAndJSON(t *testing.T) {
	rating := 80
	ev := review.Event{Op: review.OpUpsert, Review: review.Review{
		ID: "generic:r1", Provider: "generic", ExternalID: "r1", MovieID: "tt0111161", Rating: &rating,
		Version: 7, SourceUpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}}
	e := EntryOf(ev, 42)
	if e.Version != 7 || e.Offset != 42 || e.Deleted || e.HashString() != review.ContentHash(ev.Op, ev.Review) {
		t.Fatalf("EntryOf = %+v (hash %s), want version 7, upsert, hash %s", e, e.HashString(), review.ContentHash(ev.Op, ev.Review))
	}
	// IngestedAt differs between receipts of one change: same entry.
	ev2 := ev
	ev2.Review.IngestedAt = time.Now()
	if EntryOf(ev2, 42) != e {
		t.Fatal("IngestedAt changed the entry")
	}
	d := ev
	d.Op = review.OpDelete
	if de := EntryOf(d, 42); !de.Deleted || de.Hash == e.Hash {
		t.Fatalf("delete entry %+v must be deleted with its own hash", de)
	}

	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":7,"content_hash":"` + e.HashString() + `","deleted":false,"offset":42}`
	if string(b) != want {
		t.Fatalf("changelog value %s, want %s", b, want)
	}
	var back Entry
	if err := json.Unmarshal(b, &back); err != nil || back != e {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	// An entry without an offset (reconciliation's) round-trips as -1.
	e.Offset = -1
	b, _ = json.Marshal(e)
	if err := json.Unmarshal(b, &back); err != nil || back != e || strings.Contains(string(b), "offset") {
		t.Fatalf("round trip without offset: %s -> %+v, %v", b, back, err)
	}
	for _, bad := range []string{`{"version":0,"content_hash":"` + e.HashString() + `"}`, `{"version":1,"content_hash":"xyz"}`,
		`{"version":1,"content_hash":"` + strings.Repeat("zz", 16) + `"}`, `[]`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("decoded %s without error", bad)
		}
	}
	if HashOf("not hex") == HashOf("not hex either") {
		t.Fatal("HashOf maps distinct non-hex strings to one value")
	}
}

func TestOverlay(t *testing.T) {
	base := NewMemStore(0)
	base.Put("a", up(1, 1))
	o := NewOverlay(base)
	if d := Apply(o, "a", up(2, 1), 0); d != Update {
		t.Fatalf("a v2: %v", d)
	}
	if d := Apply(o, "b", up(1, 1), 0); d != New {
		t.Fatalf("b v1: %v", d)
	}
	if d := Apply(o, "a", up(2, 1), 0); d != Duplicate {
		t.Fatalf("a v2 again within the batch: %v, want duplicate (the overlay is read first)", d)
	}
	if d := Apply(o, "a", up(3, 1), 0); d != Update {
		t.Fatalf("a v3: %v", d)
	}
	if e, _ := base.Get("a"); e.Version != 1 || base.Len() != 1 {
		t.Fatal("overlay wrote through to the base before Commit")
	}
	if o.Len() != 2 {
		t.Fatalf("overlay Len %d, want 2", o.Len())
	}
	ch := o.Staged()
	if len(ch) != 2 || ch[0].Key != "a" || ch[0].Entry.Version != 3 || ch[1].Key != "b" {
		t.Fatalf("changes %+v, want a@3 then b@1", ch)
	}
	o.Discard()
	if d := Apply(o, "a", up(2, 1), 0); d != Update {
		t.Fatalf("after Discard, a v2 is decided against the base again: %v", d)
	}
	o.Commit()
	if e, _ := base.Get("a"); e.Version != 2 || len(o.Staged()) != 0 {
		t.Fatalf("after Commit base has %+v, overlay %d changes", e, len(o.Staged()))
	}
}
