package faults

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
)

// change is one change of one review as the outside world made it: a
// webhook's event, or a change the simulator recorded.
type change struct {
	id      string // canonical id, provider:review_id
	version int64
	deleted bool
	title   string // the content marker of an upsert
}

// beats reports whether c wins over o in the pipeline's order: the higher
// version, and at an equal version a delete over an upsert.
func (c change) beats(o change) bool {
	if c.version != o.version {
		return c.version > o.version
	}
	return c.deleted && !o.deleted
}

func (c change) String() string {
	if c.deleted {
		return fmt.Sprintf("v%d delete", c.version)
	}
	return fmt.Sprintf("v%d %q", c.version, c.title)
}

// model records changes by outcome. Acknowledged changes (2xx) must be in
// the store; uncertain ones (never acknowledged: the answer was lost or the
// retries ran out) may or may not be. Safe for concurrent use.
type model struct {
	mu        sync.Mutex
	acked     map[string][]change
	uncertain map[string][]change
}

func newModel() *model {
	return &model{acked: map[string][]change{}, uncertain: map[string][]change{}}
}

func (m *model) ack(cs ...change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range cs {
		m.acked[c.id] = append(m.acked[c.id], c)
	}
}

func (m *model) unsure(cs ...change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range cs {
		m.uncertain[c.id] = append(m.uncertain[c.id], c)
	}
}

// row is a review as the store holds it.
type row struct {
	version int64
	deleted bool
	title   string
}

func (r row) matches(c change) bool {
	if r.version != c.version || r.deleted != c.deleted {
		return false
	}
	return c.deleted || r.title == c.title
}

func (r row) String() string {
	if r.deleted {
		return fmt.Sprintf("v%d delete", r.version)
	}
	return fmt.Sprintf("v%d %q", r.version, r.title)
}

// fold returns the winning change of cs.
func fold(cs []change) (change, bool) {
	if len(cs) == 0 {
		return change{}, false
	}
	best := cs[0]
	for _, c := range cs[1:] {
		if c.beats(best) {
			best = c
		}
	}
	return best, true
}

// verify compares the store's rows (of this scenario's ids) with the
// model's fold: every id with an acknowledged change has a row equal to the
// fold of its acknowledged changes, or to an uncertain change that beats it;
// an id with only uncertain changes has no row or one of them; no other id
// has a row. It returns one line per problem (sorted) and the number of ids
// checked.
func (m *model) verify(rows map[string]row) (problems []string, ids int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	check := func(id string) {
		if seen[id] {
			return
		}
		seen[id] = true
		ids++
		want, hasAcked := fold(m.acked[id])
		got, hasRow := rows[id]
		switch {
		case !hasRow && hasAcked:
			problems = append(problems, fmt.Sprintf("%s: acknowledged %s missing from the store", id, want))
			return
		case !hasRow:
			return
		case hasAcked && got.matches(want):
			return
		}
		for _, u := range m.uncertain[id] {
			if got.matches(u) && (!hasAcked || u.beats(want)) {
				return
			}
		}
		if hasAcked {
			problems = append(problems, fmt.Sprintf("%s: store has %s, want the fold %s (of %d acknowledged changes)", id, got, want, len(m.acked[id])))
		} else {
			problems = append(problems, fmt.Sprintf("%s: store has %s, matching no change sent", id, got))
		}
	}
	for id := range m.acked {
		check(id)
	}
	for id := range m.uncertain {
		check(id)
	}
	for id, r := range rows {
		if !seen[id] {
			problems = append(problems, fmt.Sprintf("%s: store has %s, an id never sent", id, r))
		}
	}
	sort.Strings(problems)
	return problems, ids
}

// counts returns the number of acknowledged and uncertain changes.
func (m *model) counts() (acked, uncertain int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, cs := range m.acked {
		acked += len(cs)
	}
	for _, cs := range m.uncertain {
		uncertain += len(cs)
	}
	return acked, uncertain
}

// The checker's own logic, without I/O: it runs in every `go test`.
func TestModelVerify(t *testing.T) {
	up := func(id string, v int64, title string) change { return change{id: id, version: v, title: title} }
	del := func(id string, v int64) change { return change{id: id, version: v, deleted: true} }
	m := newModel()
	m.ack(up("a", 1, "a1"), up("a", 3, "a3"), up("a", 2, "a2")) // out of order: a3 wins
	m.ack(up("b", 2, "b2"), del("b", 2))                        // delete wins at an equal version
	m.ack(up("c", 1, "c1"), del("c", 2), up("c", 3, "c3"))      // an upsert above a delete revives
	m.ack(up("d", 1, "d1"))                                     // uncertain newer: either is fine
	m.unsure(up("d", 2, "d2"))                                  //
	m.unsure(up("e", 1, "e1"))                                  // only uncertain: row or none
	m.ack(up("f", 5, "f5"))                                     // uncertain older: must not show
	m.unsure(up("f", 4, "f4"))                                  //
	good := map[string]row{
		"a": {version: 3, title: "a3"},
		"b": {version: 2, deleted: true},
		"c": {version: 3, title: "c3"},
		"d": {version: 2, title: "d2"},
		"f": {version: 5, title: "f5"},
	}
	if p, n := m.verify(good); len(p) != 0 || n != 6 {
		t.Fatalf("a correct store: problems %v over %d ids, want none over 6", p, n)
	}
	bad := map[string]row{
		"a": {version: 2, title: "a2"},         // stale
		"b": {version: 2, title: "b2"},         // delete lost
		"c": {version: 3, title: "other"},      // wrong content
		"d": {version: 1, title: "d1"},         // fine
		"e": {version: 1, title: "e1"},         // fine
		"f": {version: 4, title: "f4"},         // older uncertain shown
		"x": {version: 1, title: "never sent"}, // extra
	}
	p, _ := m.verify(bad)
	got := strings.Join(p, "\n")
	for _, id := range []string{"a:", "b:", "c:", "f:", "x:"} {
		if !strings.Contains(got, "\n"+id) && !strings.HasPrefix(got, id) {
			t.Errorf("no problem reported for %s in:\n%s", id, got)
		}
	}
	if len(p) != 5 {
		t.Errorf("got %d problems, want 5:\n%s", len(p), got)
	}
	delete(good, "a")
	if p, _ := m.verify(good); len(p) != 1 || !strings.Contains(p[0], "missing") {
		t.Errorf("a lost acknowledged change: problems %v, want one 'missing'", p)
	}
}
