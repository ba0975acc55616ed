package generator

import (
	"reflect"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/catalog"
)

func TestReproducibleFromSeed(t *testing.T) {
	a, b, c := New(7), New(7), New(8)
	same := true
	for range 200 {
		x, y, z := a.Next(), b.Next(), c.Next()
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("same seed, different steps:\n%+v\n%+v", x, y)
		}
		same = same && reflect.DeepEqual(x, z)
	}
	if same {
		t.Fatal("different seeds gave the same 200 steps")
	}
}

// Every generated change is accepted by its provider's catalogue, the mix
// has upserts, deletes, webhooks and poll-only changes at every provider,
// and movies stay within the fixed set.
func TestStepsApply(t *testing.T) {
	cats := map[string]*catalog.Catalog{}
	for _, p := range Providers {
		a, _ := provider.Default().Get(p)
		c, err := catalog.New(a, nil)
		if err != nil {
			t.Fatal(err)
		}
		cats[p] = c
	}
	movies := map[string]bool{}
	for _, m := range Movies {
		if !review.ValidMovieID(m.ID) || movies[m.ID] {
			t.Fatalf("bad or repeated movie %s", m.ID)
		}
		movies[m.ID] = true
	}
	type key struct {
		p       string
		op      catalog.Op
		webhook bool
	}
	mix := map[key]int{}
	g := New(1)
	for range 600 {
		st := g.Next()
		e, err := cats[st.Provider].Apply(st.Change)
		if err != nil {
			t.Fatalf("%s %s: %v", st.Provider, st.Change.Op, err)
		}
		if !movies[e.MovieID] {
			t.Fatalf("movie %s not in the set", e.MovieID)
		}
		if _, err := cats[st.Provider].Adapter().Normalize(e.Event, time.Now()); err != nil {
			t.Fatal(err)
		}
		mix[key{st.Provider, st.Change.Op, st.Webhook}]++
	}
	for _, p := range Providers {
		for _, op := range []catalog.Op{catalog.OpUpsert, catalog.OpDelete} {
			for _, wh := range []bool{true, false} {
				if mix[key{p, op, wh}] == 0 {
					t.Errorf("no %s %s with webhook=%v in 600 steps", p, op, wh)
				}
			}
		}
	}
}

// TestStylesAreRegistered fails when the generator styles a provider that
// pkg/provider does not register, or a registered provider has no style.
func TestStylesAreRegistered(t *testing.T) {
	for name := range styles {
		if _, ok := provider.Lookup(name); !ok {
			t.Errorf("styles has %q, which is not a registered provider", name)
		}
	}
	for _, p := range Providers {
		if !Styled(p) {
			t.Errorf("registered provider %q has no style", p)
		}
	}
}
