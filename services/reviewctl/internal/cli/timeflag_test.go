package cli

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-01-02T15:04:05Z":        time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC),
		"2026-01-02T15:04:05.5+01:00": time.Date(2026, 1, 2, 14, 4, 5, 5e8, time.UTC),
		"2026-01-02T15:04":            time.Date(2026, 1, 2, 15, 4, 0, 0, time.UTC),
		"2026-01-02 15:04:05":         time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC),
		"2026-01-02":                  time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
		"now":                         now,
		"90m":                         now.Add(-90 * time.Minute),
		"-6h":                         now.Add(-6 * time.Hour),
		"7d":                          now.Add(-7 * 24 * time.Hour),
		"1.5d":                        now.Add(-36 * time.Hour),
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "2026-13-01", "5x", "-d"} {
		if _, err := parseTime(in, now); err == nil {
			t.Errorf("parseTime(%q) succeeded", in)
		}
	}
}

func TestRateFlag(t *testing.T) {
	for in, want := range map[string]float64{"50": 50, "50/s": 50, "600/m": 10, "7200/h": 2, "0.5": 0.5} {
		var f rateFlag
		if err := f.Set(in); err != nil || f.perSecond != want {
			t.Errorf("rate %q = %v, %v; want %v", in, f.perSecond, err, want)
		}
	}
	for _, in := range []string{"0", "-1", "fast", "5/d"} {
		var f rateFlag
		if f.Set(in) == nil {
			t.Errorf("rate %q accepted", in)
		}
	}
}

// Off a terminal, progress prints plain periodic lines and a final one;
// a run shorter than the period prints nothing.
func TestProgressLines(t *testing.T) {
	old := progressEvery
	progressEvery = 20 * time.Millisecond
	defer func() { progressEvery = old }()
	var buf syncBuffer
	p := startProgress(&buf, "reading", "records", 1000)
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
	progressEvery = time.Hour
	q := startProgress(&quiet, "reading", "records", 10)
	q.Add(10)
	q.Done()
	if quiet.String() != "" {
		t.Fatalf("a short run printed %q", quiet.String())
	}
	if count(1234567) != "1,234,567" || count(-1000) != "-1,000" || count(12) != "12" {
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
	p := &progress{w: &buf, label: "reading", unit: "records", tty: true, start: time.Now().Add(-2 * time.Second), stop: make(chan struct{})}
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
