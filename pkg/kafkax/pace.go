package kafkax

import "time"

// Pace thresholds: a partition turns busy when its records arrive at
// busyRate per second or more over a window of at least paceWindow, and
// quiet again below busyRate/4 (the gap keeps a rate near the threshold
// from switching the reader back and forth). With 6 partitions busyRate is
// 1,200 records/s in all, above the light loads whose latency matters and
// well below the maximum a 2-core machine moves.
const (
	busyRate   = 200.0
	paceWindow = 500 * time.Millisecond
	busyLinger = 5 * time.Millisecond
)

// pace tracks one partition's arrival rate and the mode it reads in.
// Not safe for concurrent use: one partition's loop owns it.
type pace struct {
	always time.Duration // GroupConfig.Linger: a wait even when quiet
	busy   bool
	start  time.Time // of the current window
	n      int       // records in the window
}

func newPace(cfg GroupConfig, now time.Time) *pace {
	return &pace{always: cfg.Linger, start: now}
}

// arrived notes that a batch's first record came at now. After a gap of a
// whole window with nothing, the partition is quiet again at once, so the
// first record after a pause does not linger.
func (p *pace) arrived(now time.Time) {
	if p.busy && p.n == 0 && now.Sub(p.start) >= paceWindow {
		p.busy = false
	}
}

// linger is how long the next batch waits for one more record.
func (p *pace) linger() time.Duration {
	if p.busy {
		return max(p.always, busyLinger)
	}
	return p.always
}

// count adds a handled batch of n records at now, and decides the mode once
// a window has passed.
func (p *pace) count(n int, now time.Time) {
	p.n += n
	elapsed := now.Sub(p.start)
	if elapsed < paceWindow {
		return
	}
	rate := float64(p.n) / elapsed.Seconds()
	p.start, p.n = now, 0
	switch {
	case !p.busy && rate >= busyRate:
		p.busy = true
	case p.busy && rate < busyRate/4:
		p.busy = false
	}
}
