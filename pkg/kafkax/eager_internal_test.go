package kafkax

import (
	"testing"
	"time"
)

// A busy round waits until busyLinger after its first write, but no longer
// than lingerGap after its latest; a quiet round does not wait.
func TestEagerLingerEndsAtAGap(t *testing.T) {
	t0 := time.Unix(0, 0)
	e := &EagerWriter{pace: newWriterPace(t0)}
	queue := func(at ...time.Duration) {
		e.queue = nil
		for _, d := range at {
			e.queue = append(e.queue, &eagerWrite{at: t0.Add(d)})
			e.last = t0.Add(d)
		}
	}
	ms := time.Millisecond

	queue(0)
	if got := e.lingerWait(t0); got != 0 {
		t.Fatalf("quiet: waits %v, want 0", got)
	}

	e.pace.busy = true
	cases := []struct {
		name   string
		writes []time.Duration // queued at
		now    time.Duration
		want   time.Duration
	}{
		{"one write, just queued: the gap bounds the wait", []time.Duration{0}, 0, lingerGap},
		{"writes keep coming: the wait follows the latest", []time.Duration{0, 800 * time.Microsecond, 1600 * time.Microsecond}, 1700 * time.Microsecond, 900 * time.Microsecond},
		{"a gap after the latest write: send", []time.Duration{0, 500 * time.Microsecond}, 1500 * time.Microsecond, 0},
		{"near the linger's end: the end bounds the wait", []time.Duration{0, 4 * ms, 4800 * time.Microsecond}, 4900 * time.Microsecond, 100 * time.Microsecond},
		{"past the linger's end, writes still coming: send", []time.Duration{0, 4 * ms, 5 * ms}, 5 * ms, 0},
	}
	for _, c := range cases {
		queue(c.writes...)
		if got := e.lingerWait(t0.Add(c.now)); got != c.want {
			t.Errorf("%s: waits %v, want %v", c.name, got, c.want)
		}
	}
	if busyLinger <= lingerGap {
		t.Fatalf("busyLinger %v is not above lingerGap %v: the gap would never end a linger early", busyLinger, lingerGap)
	}
}
