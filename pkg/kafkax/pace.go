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

// writerBusyRate is the rate of records written (all partitions together)
// at which an EagerWriter turns busy: above the light loads whose latency
// matters, well below the maximum. It counts records, not writes, so that a
// writer of a few large writes (the processor's, one per consumer batch)
// turns busy at the same load as one of many single-record writes. Busy, a
// round waits up to busyLinger from its first write, or until lingerGap
// passed without a write (eager.go): group commit alone makes rounds of a
// few records, because each round is as long as one produce round trip; at
// half the maximum the receiver and the broker then spent about 1.5 times
// the CPU per record (make bench, hotreads).
const writerBusyRate = 1000.0

// pace tracks an arrival rate (of one partition's records, or of the
// records given to one writer) and the mode it works in. Not safe for
// concurrent use: its owner serialises the calls.
type pace struct {
	always time.Duration // GroupConfig.Linger: a wait even when quiet
	busyL  time.Duration // the wait when busy (GroupConfig.BusyLinger)
	busyAt float64       // arrivals per second that turn it busy
	busy   bool
	start  time.Time // of the current window
	n      int       // arrivals in the window
	last   time.Time // of the latest arrival
}

func newPace(cfg GroupConfig, now time.Time) *pace {
	busyL := cfg.BusyLinger
	if busyL <= 0 {
		busyL = busyLinger
	}
	return &pace{always: cfg.Linger, busyL: busyL, busyAt: busyRate, start: now, last: now}
}

// newWriterPace is an EagerWriter's pace, over its writes.
func newWriterPace(now time.Time) *pace {
	return &pace{busyL: busyLinger, busyAt: writerBusyRate, start: now, last: now}
}

// arrived notes an arrival at now (for a partition, a batch's first
// record). After a gap of a whole window with nothing, the pace is quiet
// again at once and a new window starts, so the first arrival after a
// pause does not linger, and the pause does not count into a window that
// began while busy.
func (p *pace) arrived(now time.Time) {
	if now.Sub(p.last) >= paceWindow {
		p.busy = false
		p.start, p.n = now, 0
	}
	p.last = now
}

// linger is how long the next batch waits for one more record.
func (p *pace) linger() time.Duration {
	if p.busy {
		return max(p.always, p.busyL)
	}
	return p.always
}

// count adds a handled batch of n records at now, and decides the mode once
// a window has passed, or at once when the window already holds a whole
// window's worth at the busy rate: a burst turns busy within a fraction of
// the window (a maximum phase that starts after a pause spent half a second
// quiet, record by record, before), while a rate under busyAt never does.
func (p *pace) count(n int, now time.Time) {
	p.n += n
	p.last = now
	elapsed := now.Sub(p.start)
	if !p.busy && float64(p.n) >= p.busyAt*paceWindow.Seconds() {
		p.busy = true
		p.start, p.n = now, 0
		return
	}
	if elapsed < paceWindow {
		return
	}
	rate := float64(p.n) / elapsed.Seconds()
	p.start, p.n = now, 0
	switch {
	case !p.busy && rate >= p.busyAt:
		p.busy = true
	case p.busy && rate < p.busyAt/4:
		p.busy = false
	}
}
