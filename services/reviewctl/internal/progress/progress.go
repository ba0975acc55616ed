// Package progress shows a long step's advance on stderr: a bar redrawn in
// place on a terminal, else a plain line every few seconds, so the logs of a
// scheduled run stay readable. It also formats counts with thousands
// separators, as the reports print them.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// How often a line is printed when the writer is not a terminal, and how
// often the bar is redrawn when it is.
const (
	lineEvery   = 5 * time.Second
	redrawEvery = 200 * time.Millisecond
)

// Tracker is what a long step reports its advance to. Add and SetTotal are
// safe for concurrent use; Done ends the report (once; later calls do
// nothing).
type Tracker interface {
	Add(n int64)
	SetTotal(n int64)
	Done()
}

// Func starts the report of one step: label names it, unit what is counted,
// total how many are expected (0: unknown).
type Func func(label, unit string, total int64) Tracker

// To returns a Func that reports on w.
func To(w io.Writer) Func {
	return func(label, unit string, total int64) Tracker { return Start(w, label, unit, total) }
}

// None is a Func that reports nothing, for callers and tests without a
// terminal to show progress on.
func None(label, unit string, total int64) Tracker { return nop{} }

type nop struct{}

func (nop) Add(int64)      {}
func (nop) SetTotal(int64) {}
func (nop) Done()          {}

// Reporter shows a step's advance on w: a bar redrawn in place when w is a
// terminal, else one plain line every 5 seconds. Add and SetTotal are safe
// for concurrent use; Done stops it and prints the final state once.
type Reporter struct {
	w     io.Writer
	label string
	unit  string
	tty   bool
	start time.Time

	done  atomic.Int64
	total atomic.Int64 // 0: unknown

	printed  atomic.Bool
	stop     chan struct{}
	finished sync.Once
	wg       sync.WaitGroup
	mu       sync.Mutex // serializes writes to w
}

// Start starts reporting on w in a goroutine of its own, which Done stops;
// total 0 means unknown.
func Start(w io.Writer, label, unit string, total int64) *Reporter {
	return start(w, label, unit, total, lineEvery)
}

// start is Start with the period of plain lines given.
func start(w io.Writer, label, unit string, total int64, lines time.Duration) *Reporter {
	p := &Reporter{w: w, label: label, unit: unit, tty: isTerminal(w), start: time.Now(), stop: make(chan struct{})}
	p.total.Store(total)
	every := lines
	if p.tty {
		every = redrawEvery
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.print(false)
			}
		}
	}()
	return p
}

// Add counts n more units done.
func (p *Reporter) Add(n int64) { p.done.Add(n) }

// SetTotal sets the number of units expected.
func (p *Reporter) SetTotal(n int64) { p.total.Store(n) }

// Done stops the reporter and prints the final line, if it printed any
// line before: a run too short to report progress stays quiet.
func (p *Reporter) Done() {
	p.finished.Do(func() {
		close(p.stop)
		p.wg.Wait()
		if p.printed.Load() {
			p.print(true)
		}
	})
}

func (p *Reporter) print(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && !final && time.Since(p.start) < time.Second {
		return // no bar for a run that ends within a second
	}
	p.printed.Store(true)
	done, total := p.done.Load(), p.total.Load()
	el := time.Since(p.start)
	rate := 0.0
	if s := el.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	var b strings.Builder
	if p.tty {
		b.WriteString("\r\x1b[K")
	}
	b.WriteString(p.label)
	b.WriteString(": ")
	if total > 0 {
		frac := min(1, float64(done)/float64(total))
		if p.tty {
			const width = 28
			n := int(frac * width)
			b.WriteString("[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "] ")
		}
		fmt.Fprintf(&b, "%5.1f%% %s/%s %s", frac*100, Count(done), Count(total), p.unit)
	} else {
		fmt.Fprintf(&b, "%s %s", Count(done), p.unit)
	}
	fmt.Fprintf(&b, ", %s/s, %s", Count(int64(rate)), el.Round(100*time.Millisecond))
	if !final && total > done && rate > 0 {
		fmt.Fprintf(&b, ", about %s left", (time.Duration(float64(total-done) / rate * float64(time.Second))).Round(time.Second))
	}
	if final {
		b.WriteString(", done")
	}
	if !p.tty || final {
		b.WriteString("\n")
	}
	io.WriteString(p.w, b.String())
}

// Count formats n with thousands separators.
func Count(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
