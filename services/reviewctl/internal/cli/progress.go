package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progressEvery is how often a progress line is printed when stderr is not
// a terminal; on a terminal the bar is redrawn every progressRedraw.
var (
	progressEvery  = 5 * time.Second
	progressRedraw = 200 * time.Millisecond
)

// progress shows a long run's advance on stderr: a bar redrawn in place
// when stderr is a terminal, else one plain line every progressEvery (so
// logs of a run under a scheduler stay readable). Add and SetTotal are safe
// for concurrent use; Done stops it and prints the final state once.
type progress struct {
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

// startProgress starts reporting on w; total 0 means unknown.
func startProgress(w io.Writer, label, unit string, total int64) *progress {
	p := &progress{w: w, label: label, unit: unit, tty: isTerminal(w), start: time.Now(), stop: make(chan struct{})}
	p.total.Store(total)
	every := progressEvery
	if p.tty {
		every = progressRedraw
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
func (p *progress) Add(n int64) { p.done.Add(n) }

// SetTotal sets the number of units expected.
func (p *progress) SetTotal(n int64) { p.total.Store(n) }

// Done stops the reporter and prints the final line, if it printed any
// line before: a run too short to report progress stays quiet.
func (p *progress) Done() {
	p.finished.Do(func() {
		close(p.stop)
		p.wg.Wait()
		if p.printed.Load() {
			p.print(true)
		}
	})
}

func (p *progress) print(final bool) {
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
		fmt.Fprintf(&b, "%5.1f%% %s/%s %s", frac*100, count(done), count(total), p.unit)
	} else {
		fmt.Fprintf(&b, "%s %s", count(done), p.unit)
	}
	fmt.Fprintf(&b, ", %s/s, %s", count(int64(rate)), el.Round(100*time.Millisecond))
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

// count formats n with thousands separators.
func count(n int64) string {
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
