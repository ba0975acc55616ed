package load

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Trace is one review's way through the pipeline, from the timestamps the
// records themselves carry and what the generator saw; a zero time is a
// moment that was not observed.
type Trace struct {
	Sent       time.Time // the generator started the webhook delivery
	Received   time.Time // the raw record's received_at (the receiver's clock, after reading the request)
	Raw        time.Time // the raw record's Kafka timestamp (kafka-go stamps it as it encodes the produce request; ms)
	Normalized time.Time // the normalized record's Kafka timestamp (the processor's produce request; ms)
	TxStart    time.Time // the review row's committed_at: now() of the sink's transaction, its start
	Notified   time.Time // the commit notification reached the generator's LISTEN connection
	Streamed   time.Time // the api's SSE `review` event for it reached the generator
}

// Hop is one stretch of a review's way, from one Trace moment to another.
type Hop struct {
	Name  string
	Label string
	from  func(Trace) time.Time
	to    func(Trace) time.Time
}

// Hops are the stretches in order; together they cover Sent to Streamed.
var Hops = []Hop{
	{"http", "webhook sent -> receiver received_at (HTTP)", func(t Trace) time.Time { return t.Sent }, func(t Trace) time.Time { return t.Received }},
	{"produce", "received_at -> raw record timestamp (receiver's produce)", func(t Trace) time.Time { return t.Received }, func(t Trace) time.Time { return t.Raw }},
	{"process", "raw record -> normalized record timestamp (processor)", func(t Trace) time.Time { return t.Raw }, func(t Trace) time.Time { return t.Normalized }},
	{"sink", "normalized record -> sink transaction start (committed_at)", func(t Trace) time.Time { return t.Normalized }, func(t Trace) time.Time { return t.TxStart }},
	{"commit", "sink transaction start -> commit notification", func(t Trace) time.Time { return t.TxStart }, func(t Trace) time.Time { return t.Notified }},
	{"fanout", "commit notification -> SSE review event (api)", func(t Trace) time.Time { return t.Notified }, func(t Trace) time.Time { return t.Streamed }},
}

// EndToEnd is webhook sent to SSE event received: what a viewer waits.
var EndToEnd = Hop{"live", "webhook sent -> SSE review event", func(t Trace) time.Time { return t.Sent }, func(t Trace) time.Time { return t.Streamed }}

// Dist is a latency distribution in milliseconds.
type Dist struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Of is the distribution of the hop over the traces that observed both of
// its ends. A negative duration is kept: Kafka timestamps are whole
// milliseconds, so a hop shorter than that can come out below zero.
func (h Hop) Of(ts []Trace) Dist {
	var ms []float64
	for _, t := range ts {
		a, b := h.from(t), h.to(t)
		if a.IsZero() || b.IsZero() {
			continue
		}
		ms = append(ms, float64(b.Sub(a))/float64(time.Millisecond))
	}
	return distOf(ms)
}

func distOf(ms []float64) Dist {
	d := Dist{Count: len(ms)}
	if len(ms) == 0 {
		return d
	}
	sort.Float64s(ms)
	d.P50, d.P99, d.P999, d.Max = Quantile(ms, .5), Quantile(ms, .99), Quantile(ms, .999), ms[len(ms)-1]
	return d
}

// Breakdown is every hop's distribution and the end-to-end one, by name.
// The hops' percentiles do not add up to the end-to-end ones: each is
// taken over its own values.
func Breakdown(ts []Trace) map[string]Dist {
	out := map[string]Dist{EndToEnd.Name: EndToEnd.Of(ts)}
	for _, h := range Hops {
		out[h.Name] = h.Of(ts)
	}
	return out
}

// FullCore is the share of a core at which a process counts as saturated:
// /proc's ticks and a phase of a few seconds do not give a clean 1.00.
const FullCore = 0.9

// Limiter says what limited a phase from the CPU cores each process used
// (cores by name, "loadgen" the generator itself), the machine's busy cores
// out of ncpu (negative when unknown), and whether the phase was a closed
// loop (senders waiting for answers) or an open loop at a fixed rate.
func Limiter(cores map[string]float64, machine float64, ncpu int, closedLoop bool) string {
	names := make([]string, 0, len(cores))
	for n := range cores {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if cores[names[i]] != cores[names[j]] {
			return cores[names[i]] > cores[names[j]]
		}
		return names[i] < names[j]
	})
	top := func(n int) string {
		var parts []string
		for _, name := range names[:min(n, len(names))] {
			parts = append(parts, fmt.Sprintf("%s %.2f", name, cores[name]))
		}
		return strings.Join(parts, ", ")
	}
	var full []string
	for _, n := range names {
		if cores[n] >= FullCore {
			full = append(full, fmt.Sprintf("%s (%.2f cores)", n, cores[n]))
		}
	}
	switch {
	case cores["loadgen"] >= FullCore:
		return "the load generator itself; at a full core: " + strings.Join(full, ", ")
	case len(full) > 0:
		return "at a full core: " + strings.Join(full, ", ")
	case ncpu > 0 && machine >= FullCore*float64(ncpu):
		return fmt.Sprintf("the machine's CPUs (%.2f of %d busy; most: %s)", machine, ncpu, top(3))
	case closedLoop:
		return fmt.Sprintf("no CPU saturated (machine %.2f of %d; most: %s): waits, the senders' answers", machine, ncpu, top(2))
	default:
		return fmt.Sprintf("the offered rate: nothing saturated (machine %.2f of %d; most: %s)", machine, ncpu, top(2))
	}
}
