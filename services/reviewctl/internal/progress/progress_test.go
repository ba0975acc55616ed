package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// Off a terminal, progress prints plain periodic lines and a final one;
// a run shorter than the period prints nothing.
func TestProgressLines(t *testing.T) {
	var buf syncBuffer
	p := start(&buf, "reading", "records", 1000, 20*time.Millisecond)
	p.Add(400)
	testenv.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(buf.String(), "40.0% 400/1,000 records") {
			return testenv.Errorf("no progress line: %q", buf.String())
		}
		return nil
	})
	p.Add(600)
	p.Done()
	out := buf.String()
	if strings.Contains(out, "\r") || !strings.HasSuffix(out, "done\n") || !strings.Contains(out, "100.0% 1,000/1,000") {
		t.Fatalf("progress output %q", out)
	}
	var quiet syncBuffer
	q := start(&quiet, "reading", "records", 10, time.Hour)
	q.Add(10)
	q.Done()
	if quiet.String() != "" {
		t.Fatalf("a short run printed %q", quiet.String())
	}
	if Count(1234567) != "1,234,567" || Count(-1000) != "-1,000" || Count(12) != "12" {
		t.Fatal("count formatting")
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// On a terminal the bar is redrawn in place: carriage return, erase line,
// no newline until the end.
func TestProgressBar(t *testing.T) {
	var buf syncBuffer
	p := &Reporter{w: &buf, label: "reading", unit: "records", tty: true, start: time.Now().Add(-2 * time.Second), stop: make(chan struct{})}
	p.total.Store(1000)
	p.done.Store(500)
	p.print(false)
	out := buf.String()
	if !strings.HasPrefix(out, "\r\x1b[Kreading: [##############..............]  50.0% 500/1,000 records") || strings.Contains(out, "\n") ||
		!strings.Contains(out, "left") {
		t.Fatalf("bar %q", out)
	}
	p.print(true)
	if !strings.HasSuffix(buf.String(), "done\n") {
		t.Fatalf("final bar %q", buf.String())
	}
}
