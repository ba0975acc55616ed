package kafkax

import (
	"testing"
	"time"
)

// The pace turns busy at busyRate over a window, stays busy down to a
// quarter of it, turns quiet below that or after a whole window with
// nothing, and lingers only while busy (or when asked to always).
func TestPace(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	p := newPace(GroupConfig{}, t0)
	steps := []struct {
		ms   int
		n    int
		busy bool
	}{
		{100, 50, false},  // inside the window: no decision
		{500, 49, false},  // 99 in 0.5 s: 198/s, under busyRate
		{1000, 100, true}, // 200/s: busy
		{1500, 30, true},  // 60/s: above a quarter, still busy
		{2000, 24, false}, // 48/s: quiet
		{2100, 60, false}, // inside the window, under a window's worth
		{2200, 40, true},  // a window's worth at busyRate (100) by 200 ms: busy at once
	}
	for i, s := range steps {
		if p.count(s.n, at(s.ms)); p.busy != s.busy {
			t.Fatalf("step %d: busy %v, want %v", i, p.busy, s.busy)
		}
		want := time.Duration(0)
		if s.busy {
			want = busyLinger
		}
		if got := p.linger(); got != want {
			t.Fatalf("step %d: linger %v, want %v", i, got, want)
		}
	}
	// Nothing for a whole window, then a record: quiet at once.
	p.arrived(at(2800))
	if p.busy || p.linger() != 0 {
		t.Fatal("a record after a quiet window still lingers")
	}
	// A record inside the window keeps the mode.
	q := newPace(GroupConfig{}, t0)
	q.busy = true
	q.n = 1
	q.arrived(at(100))
	if !q.busy {
		t.Fatal("a busy partition turned quiet within its window")
	}
	// GroupConfig.Linger asks for a wait whatever the pace.
	if l := newPace(GroupConfig{Linger: 20 * time.Millisecond}, t0).linger(); l != 20*time.Millisecond {
		t.Fatalf("linger with GroupConfig.Linger: %v", l)
	}
	// Busy, a pause of a window in the middle of one: the next arrival is
	// quiet, and the busy records before the pause do not count into the
	// new window.
	r := newPace(GroupConfig{}, t0)
	if r.count(200, at(500)); !r.busy {
		t.Fatal("400/s did not turn the pace busy")
	}
	r.count(150, at(700))
	r.arrived(at(1300))
	if r.count(1, at(1300)); r.busy || r.linger() != 0 {
		t.Fatal("an arrival after a pause within a busy window lingers")
	}
	// GroupConfig.BusyLinger is the busy wait, and only the busy one.
	bl := newPace(GroupConfig{BusyLinger: 10 * time.Millisecond}, t0)
	if l := bl.linger(); l != 0 {
		t.Fatalf("quiet linger with BusyLinger: %v", l)
	}
	if bl.count(200, at(500)); !bl.busy || bl.linger() != 10*time.Millisecond {
		t.Fatalf("busy linger with BusyLinger 10ms: %v", bl.linger())
	}
	// A writer's pace turns busy at writerBusyRate, over records.
	wp := newWriterPace(t0)
	if wp.count(int(writerBusyRate/2)-1, at(500)); wp.busy {
		t.Fatal("a writer just under writerBusyRate turned busy")
	}
	if wp.count(int(writerBusyRate/2), at(1000)); !wp.busy || wp.linger() != busyLinger {
		t.Fatal("a writer at writerBusyRate did not turn busy")
	}
}
