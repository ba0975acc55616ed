package main

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/reviewpipe/reviewpipe/bench/internal/load"
)

func TestMedianAndRatio(t *testing.T) {
	for _, c := range []struct {
		vs          []float64
		med, lo, hi float64
	}{
		{nil, 0, 0, 0},
		{[]float64{3}, 3, 3, 3},
		{[]float64{5, 1, 3}, 3, 1, 5},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
	} {
		med, lo, hi := median(append([]float64(nil), c.vs...))
		if med != c.med || lo != c.lo || hi != c.hi {
			t.Errorf("median(%v) = %v [%v..%v], want %v [%v..%v]", c.vs, med, lo, hi, c.med, c.lo, c.hi)
		}
	}
	for _, c := range []struct {
		cur, base float64
		want      string
	}{{150, 100, "x1.50"}, {0, 100, "x0.00"}, {5, 0, "-"}, {math.NaN(), 1, "-"}} {
		if got := formatRatio(Ratio(c.cur, c.base)); got != c.want {
			t.Errorf("ratio %v / %v = %s, want %s", c.cur, c.base, got, c.want)
		}
	}
}

func TestVariantsInterleave(t *testing.T) {
	var got []int
	for i := range 6 {
		got = append(got, variantIndex(i, 2))
	}
	if want := []int{0, 1, 1, 0, 0, 1}; !equal(got, want) {
		t.Errorf("two variants: %v, want %v", got, want)
	}
	for i := range 3 {
		if v := variantIndex(i, 1); v != 0 {
			t.Errorf("one variant: run %d is %d", i, v)
		}
	}
}

func TestAggregatePerVariantAndTable(t *testing.T) {
	runs := []*load.Run{
		{Variant: "baseline", Metrics: map[string]float64{"rows_per_s_sustained": 100, "max_cpu_us_per_review_sink": 30}},
		{Variant: "current", Metrics: map[string]float64{"rows_per_s_sustained": 120, "max_cpu_us_per_review_sink": 24}},
		{Variant: "current", Metrics: map[string]float64{"rows_per_s_sustained": 140, "max_cpu_us_per_review_sink": 20}},
	}
	cur, base := aggregate(runs, "current"), aggregate(runs, "baseline")
	if cur.Median["rows_per_s_sustained"] != 130 || base.Median["rows_per_s_sustained"] != 100 {
		t.Fatalf("medians: current %v, baseline %v", cur.Median, base.Median)
	}
	res := &scenarioResult{scenario: scenario{Name: "single"}, Runs: runs, stats: cur, Baseline: &base}
	var out bytes.Buffer
	printTables(&out, &report{Host: map[string]string{}, Results: []*scenarioResult{res}}, nil)
	for _, want := range []string{"130 [120..140]", "100 [100..100]", "x1.30", "x0.73"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "reconcile") {
		t.Errorf("a row without figures was printed:\n%s", out.String())
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The light rows carry issue 13's targets at 20/s and 300/s, and none at
// other rates (besides every event arriving).
func TestLightTargets(t *testing.T) {
	want := map[string]string{
		"light20_webhook_p99_ms": "<= 10", "light20_live_p50_ms": "<= 20", "light20_live_p99_ms": "<= 50",
		"light300_webhook_p99_ms": "<= 20",
	}
	for _, r := range lightRows([]float64{20, 200, 300}) {
		if strings.HasSuffix(r.keys[0], "_live_coverage") {
			want[r.keys[0]] = "1"
		}
		if got := r.target; got != want[r.keys[0]] {
			t.Errorf("%s: target %q, want %q", r.keys[0], got, want[r.keys[0]])
		}
	}
}
