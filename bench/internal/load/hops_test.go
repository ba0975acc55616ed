package load

import (
	"testing"
	"time"
)

func TestHopsOfTraces(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	full := func(offsets ...float64) Trace {
		return Trace{Sent: at(offsets[0]), Received: at(offsets[1]), Raw: at(offsets[2]), Normalized: at(offsets[3]),
			TxStart: at(offsets[4]), Notified: at(offsets[5]), Streamed: at(offsets[6])}
	}
	cases := []struct {
		name   string
		traces []Trace
		want   map[string]Dist // only the fields given are checked: Count, P50, P99
	}{
		{"none", nil, map[string]Dist{"http": {}, "live": {}}},
		{"one trace, each hop its own difference", []Trace{full(0, 1, 3, 10, 30, 32, 40)}, map[string]Dist{
			"http": {1, 1, 1, 0, 0}, "produce": {1, 2, 2, 0, 0}, "process": {1, 7, 7, 0, 0}, "sink": {1, 20, 20, 0, 0},
			"commit": {1, 2, 2, 0, 0}, "fanout": {1, 8, 8, 0, 0}, "live": {1, 40, 40, 0, 0}}},
		{"a moment not seen leaves out only the hops that touch it", []Trace{
			full(0, 1, 3, 10, 30, 32, 40),
			{Sent: at(0), Received: at(2), Raw: at(4), Normalized: at(6), TxStart: at(8), Notified: at(9)}, // no SSE event
		}, map[string]Dist{"http": {2, 1, 2, 0, 0}, "fanout": {1, 8, 8, 0, 0}, "live": {1, 40, 40, 0, 0}}},
		{"a millisecond-truncated Kafka timestamp may come before received_at", []Trace{
			{Received: at(10.4), Raw: at(10)},
		}, map[string]Dist{"produce": {1, -0.4, -0.4, 0, 0}}},
	}
	for _, c := range cases {
		got := Breakdown(c.traces)
		for name, w := range c.want {
			g := got[name]
			if g.Count != w.Count || !near(g.P50, w.P50) || !near(g.P99, w.P99) {
				t.Errorf("%s: %s = %+v, want count %d p50 %v p99 %v", c.name, name, g, w.Count, w.P50, w.P99)
			}
		}
	}
}

func TestHopPercentilesNearestRank(t *testing.T) {
	t0 := time.Unix(0, 0)
	var ts []Trace
	for i := 1; i <= 1000; i++ { // fanout of i ms, shuffled order
		j := (i * 7919) % 1000
		ts = append(ts, Trace{Notified: t0, Streamed: t0.Add(time.Duration(j+1) * time.Millisecond)})
	}
	d := Breakdown(ts)["fanout"]
	if d.Count != 1000 || d.P50 != 500 || d.P99 != 990 || d.P999 != 999 || d.Max != 1000 {
		t.Fatalf("fanout = %+v, want 500/990/999/1000 over 1000", d)
	}
}

func TestLimiter(t *testing.T) {
	cases := []struct {
		name    string
		cores   map[string]float64
		machine float64
		closed  bool
		want    string
	}{
		{"a process at a full core", map[string]float64{"receiver": 0.95, "sink": 0.3, "loadgen": 0.2}, 1.5, true,
			"at a full core: receiver (0.95 cores)"},
		{"the generator itself", map[string]float64{"receiver": 0.5, "loadgen": 0.92}, 1.5, true,
			"the load generator itself; at a full core: loadgen (0.92 cores)"},
		{"the machine, no single process", map[string]float64{"receiver": 0.45, "postgres": 0.35, "kafka": 0.3, "sink": 0.2}, 1.9, true,
			"the machine's CPUs (1.90 of 2 busy; most: receiver 0.45, postgres 0.35, kafka 0.30)"},
		{"open loop with room", map[string]float64{"api": 0.1, "receiver": 0.05}, 0.4, false,
			"the offered rate: nothing saturated (machine 0.40 of 2; most: api 0.10, receiver 0.05)"},
		{"closed loop with room", map[string]float64{"api": 0.1, "receiver": 0.1}, 0.4, true,
			"no CPU saturated (machine 0.40 of 2; most: api 0.10, receiver 0.10): waits, the senders' answers"},
	}
	for _, c := range cases {
		if got := Limiter(c.cores, c.machine, 2, c.closed); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
