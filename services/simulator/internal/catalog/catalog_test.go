package catalog

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// frozen is a clock that never moves, the worst case for record times.
func frozen() time.Time { return t0 }

func newCat(t *testing.T, name string) *Catalog {
	t.Helper()
	a, _ := provider.Default().Get(name)
	c, err := New(a, frozen)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func upsert(id, movie string, version int64) Change {
	return Change{Op: OpUpsert, Data: provider.GenericData{
		ReviewID: id, Version: version, UpdatedAt: "2026-11-20T09:00:00.123456Z",
		Movie:  &provider.GenericMovie{ImdbID: movie, Title: "T"},
		Author: "Ann", Title: "Hope", Body: "Fine.", Language: "en-gb", URL: "https://x.example/" + id,
		Rating: &provider.GenericRating{Value: 7.3, Scale: 10},
	}}
}

func del(id string, version int64) Change {
	return Change{Op: OpDelete, Data: provider.GenericData{ReviewID: id, Version: version}}
}

func TestApplyVersions(t *testing.T) {
	for _, name := range []string{"generic", "cinescore", "reelpulse"} {
		t.Run(name, func(t *testing.T) {
			c := newCat(t, name)
			must := func(ch Change, want int64) Entry {
				t.Helper()
				e, err := c.Apply(ch)
				if err != nil {
					t.Fatalf("apply: %v", err)
				}
				if e.Version != want {
					t.Fatalf("version %d, want %d", e.Version, want)
				}
				return e
			}
			must(upsert("a", "tt0000001", 0), 1) // auto: new review
			must(upsert("a", "tt0000001", 0), 2) // auto: current + 1
			must(upsert("a", "tt0000001", 7), 7) // explicit and above
			for _, v := range []int64{7, 3} {
				if _, err := c.Apply(upsert("a", "tt0000001", v)); !errors.Is(err, ErrConflict) {
					t.Fatalf("version %d: %v, want ErrConflict", v, err)
				}
			}
			if _, err := c.Apply(del("nope", 0)); !errors.Is(err, ErrNotFound) {
				t.Fatalf("delete unknown: %v", err)
			}
			d := must(del("a", 0), 8)
			if !d.Deleted || d.MovieID != "tt0000001" {
				t.Fatalf("delete entry %+v", d)
			}
			if _, err := c.Apply(del("a", 8)); !errors.Is(err, ErrConflict) {
				t.Fatalf("delete at the same version: %v", err)
			}
			must(upsert("a", "tt0000001", 0), 9) // a newer upsert brings it back
			for _, bad := range []Change{
				{Op: "replace", Data: upsert("a", "tt0000001", 0).Data},
				{Op: OpUpsert, Data: provider.GenericData{ReviewID: "b"}}, // no movie
				{Op: OpUpsert, Data: provider.GenericData{ReviewID: " ", Movie: &provider.GenericMovie{ImdbID: "tt0000001"}}},
				{Op: OpUpsert, Data: provider.GenericData{ReviewID: "b", Movie: &provider.GenericMovie{ImdbID: "x"}}}, // adapter refuses
				{Op: OpUpsert, Data: provider.GenericData{ReviewID: "b", UpdatedAt: "yesterday", Movie: &provider.GenericMovie{ImdbID: "tt0000001"}}},
				{Op: OpUpsert, Data: provider.GenericData{ReviewID: "b", Version: -1, Movie: &provider.GenericMovie{ImdbID: "tt0000001"}}},
				{Op: OpUpsert, Data: provider.GenericData{ReviewID: "b", Movie: &provider.GenericMovie{ImdbID: "tt0000001"},
					Rating: &provider.GenericRating{Value: 1, Scale: 0}}},
			} {
				if _, err := c.Apply(bad); !errors.Is(err, ErrInvalid) {
					t.Errorf("%+v: %v, want ErrInvalid", bad, err)
				}
			}
			if c.Len() != 5 {
				t.Fatalf("feed has %d entries, want 5 (refused changes leave no trace)", c.Len())
			}
		})
	}
}

func TestRecordTimesStrictlyIncrease(t *testing.T) {
	for _, name := range []string{"generic", "cinescore", "reelpulse"} {
		c := newCat(t, name)
		for i := range 50 {
			if _, err := c.Apply(upsert("a", "tt0000001", int64(i+1))); err != nil {
				t.Fatal(err)
			}
		}
		es, _, _ := c.Page(time.Time{}, "", 0, 100)
		for i := 1; i < len(es); i++ {
			if d := es[i].Recorded.Sub(es[i-1].Recorded); d != c.Tick() {
				t.Fatalf("%s: record times %v apart under a frozen clock, want %v", name, d, c.Tick())
			}
			if es[i].Seq != es[i-1].Seq+1 {
				t.Fatalf("%s: seq %d after %d", name, es[i].Seq, es[i-1].Seq)
			}
		}
	}
}

// Walking pages of a fixed query while changes keep arriving (the same
// reviews edited, so positions would move in a state listing) reads every
// change exactly once, and the watermark resumes after the last one.
func TestPageWalkSeesEveryChangeOnce(t *testing.T) {
	c := newCat(t, "generic")
	ids := []string{"a", "b", "c", "d", "e"}
	for _, id := range ids {
		if _, err := c.Apply(upsert(id, "tt0000001", 0)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[int64]int{}
	since := t0.Add(-time.Hour)
	var wm time.Time
	for page := 0; ; page++ {
		es, total, w := c.Page(since, "", page*2, 2)
		wm = w
		for _, e := range es {
			seen[e.Seq]++
		}
		if page < 4 { // edits land between page reads
			if _, err := c.Apply(upsert(ids[page], "tt0000001", 0)); err != nil {
				t.Fatal(err)
			}
		}
		if total <= (page+1)*2 { // has_more false
			break
		}
	}
	// The next poll resumes just past the watermark and finds the rest.
	next, _, _ := c.Page(wm.Add(c.Tick()), "", 0, 100)
	for _, e := range next {
		seen[e.Seq]++
	}
	if len(next) != 1 {
		t.Fatalf("%d changes after the watermark, want the 1 edit made after the last page", len(next))
	}
	if int64(len(seen)) != c.Len() {
		t.Fatalf("saw %d distinct changes of %d", len(seen), c.Len())
	}
	for seq, n := range seen {
		if n != 1 {
			t.Fatalf("change %d seen %d times", seq, n)
		}
	}
	if es, _, _ := c.Page(next[0].Recorded, "", 0, 100); len(es) != 1 {
		t.Fatalf("since is inclusive: %d changes at the last record time, want 1", len(es))
	}
}

func TestPageMovieFilterAndWatermark(t *testing.T) {
	c := newCat(t, "cinescore")
	for i, m := range []string{"tt0000001", "tt0000002", "tt0000001", "tt0000002", "tt0000001"} {
		if _, err := c.Apply(upsert(string(rune('a'+i)), m, 0)); err != nil {
			t.Fatal(err)
		}
	}
	es, total, wm := c.Page(time.Time{}, "tt0000001", 1, 1)
	if total != 3 || len(es) != 1 || es[0].ReviewID != "c" || !wm.Equal(es[0].Recorded) {
		t.Fatalf("page 2 of 1: %d entries (%v), total %d, watermark %v", len(es), es, total, wm)
	}
	es, total, wm = c.Page(time.Time{}, "tt0000001", 10, 5) // past the end
	if len(es) != 0 || total != 3 || wm.IsZero() {
		t.Fatalf("past the end: %d entries, total %d, watermark %v", len(es), total, wm)
	}
	if es, _, wm := c.Page(t0.Add(time.Hour), "", 0, 5); len(es) != 0 || !wm.IsZero() {
		t.Fatalf("nothing recorded after since: %d entries, watermark %v", len(es), wm)
	}
}

func TestAfterAndSeqBefore(t *testing.T) {
	c := newCat(t, "reelpulse")
	for i := range 7 {
		if _, err := c.Apply(upsert("a", "tt0000001", int64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	var got []int64
	seq := int64(0)
	for {
		es, more := c.After(seq, 3)
		for _, e := range es {
			got = append(got, e.Seq)
			seq = e.Seq
		}
		if !more {
			break
		}
	}
	if len(got) != 7 || got[0] != 1 || got[6] != 7 {
		t.Fatalf("token walk %v", got)
	}
	third, _ := c.After(2, 1)
	if s := c.SeqBefore(third[0].Recorded); s != 2 {
		t.Fatalf("SeqBefore the third change = %d, want 2", s)
	}
}

func TestTruthAndCurrent(t *testing.T) {
	for _, name := range []string{"generic", "cinescore", "reelpulse"} {
		t.Run(name, func(t *testing.T) {
			c := newCat(t, name)
			for _, ch := range []Change{upsert("a", "tt0000001", 0), upsert("b", "tt0000001", 0), upsert("c", "tt0000002", 0),
				upsert("b", "tt0000001", 0), del("a", 0), upsert("d", "tt0000001", 0), upsert("d", "tt0000002", 0)} {
				if _, err := c.Apply(ch); err != nil {
					t.Fatal(err)
				}
			}
			cur := c.Current("tt0000001")
			if len(cur) != 2 || cur[0].ReviewID != "a" || !cur[0].Deleted || cur[1].ReviewID != "b" || cur[1].Version != 2 {
				t.Fatalf("current of tt0000001: %+v", cur)
			}
			truth := c.Truth("tt0000001")
			if len(truth) != 1 || truth[0].ID != review.Key(name, "b") || truth[0].Version != 2 || truth[0].MovieID != "tt0000001" {
				t.Fatalf("truth of tt0000001: %+v", truth)
			}
			if got := c.Truth("tt0000002"); len(got) != 2 || got[0].ExternalID != "c" || got[1].ExternalID != "d" {
				t.Fatalf("truth of tt0000002 (d moved there): %+v", got)
			}
			if got := c.Truth("tt0000003"); len(got) != 0 {
				t.Fatalf("truth of an unknown movie: %+v", got)
			}
		})
	}
}

// What each provider's event becomes, canonically, from one control change.
func TestNativeConversions(t *testing.T) {
	want := map[string]struct {
		rating  int
		updated time.Time
	}{
		"generic":   {73, time.Date(2026, 11, 20, 9, 0, 0, 123456000, time.UTC)},
		"cinescore": {75, time.Date(2026, 11, 20, 9, 0, 0, 123000000, time.UTC)}, // half stars, milliseconds
		"reelpulse": {73, time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)},         // seconds
	}
	for name, w := range want {
		c := newCat(t, name)
		if _, err := c.Apply(upsert("a", "tt0000001", 0)); err != nil {
			t.Fatal(err)
		}
		r := c.Truth("tt0000001")[0]
		if *r.Rating != w.rating || !r.SourceUpdatedAt.Equal(w.updated) || r.Language != "en-GB" ||
			r.Author != "Ann" || r.Title != "Hope" || r.Body != "Fine." || r.URL != "https://x.example/a" {
			t.Errorf("%s: %+v (rating %d)", name, r, *r.Rating)
		}
	}
	c := newCat(t, "reelpulse")
	ch := upsert("a", "tt0000001", 0)
	ch.LetterGrade = true
	e, err := c.Apply(ch)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := c.Adapter().Normalize(e.Event, time.Time{})
	if *ev.Review.Rating != 75 { // 7.3/10 of 12 steps is 8.76, nearest grade B+ (index 9)
		t.Errorf("letter grade rating %d, event %s", *ev.Review.Rating, e.Event)
	}
	e2, _ := c.Apply(upsert("a", "tt0000001", 0))
	if string(e.Event[:25]) != `{"event":"post.published"` || string(e2.Event[:22]) != `{"event":"post.edited"` {
		t.Errorf("event kinds: %s / %s", e.Event[:30], e2.Event[:30])
	}
}

func TestConcurrentApply(t *testing.T) {
	c := newCat(t, "generic")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if _, err := c.Apply(upsert(string(rune('a'+w)), "tt0000001", 0)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for w := range 4 {
		if e, _ := c.Latest(string(rune('a' + w))); e.Version != 50 {
			t.Fatalf("review %d at version %d, want 50", w, e.Version)
		}
	}
}

// TestNativesAreRegistered fails when the catalogue writes events for a
// provider that pkg/provider does not register (the other direction is
// app's TestEveryRegisteredProviderIsSimulated).
func TestNativesAreRegistered(t *testing.T) {
	for name := range natives {
		if _, ok := provider.Lookup(name); !ok {
			t.Errorf("natives has %q, which is not a registered provider", name)
		}
	}
}
