package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reviewpipe/reviewpipe/bench/internal/load"
)

// row is a line of the table: one metric, printed as median [min..max], or
// several (keys), printed as their medians joined by " / ".
type row struct {
	keys          []string
	label, format string
	target        string
}

func one(key, label, format, target string) row {
	return row{keys: []string{key}, label: label, format: format, target: target}
}

// several is a row of one metric per name: prefix+name+suffix.
func several(prefix string, names []string, suffix, label, format string) row {
	r := row{label: label + " (" + strings.Join(names, " / ") + ")", format: format}
	for _, n := range names {
		r.keys = append(r.keys, prefix+n+suffix)
	}
	return r
}

var (
	pipelineProcs = []string{"receiver", "processor", "sink", "api", "kafka", "postgres", "loadgen", "others", "machine"}
	readProcs     = []string{"api", "postgres", "loadgen", "machine"}
)

// pipelineRows are the rows of the scenarios with a maximum phase.
var pipelineRows = []row{
	one("max_accepted_reviews_per_s", "webhooks accepted, max (reviews/s)", "%.0f", ""),
	one("rows_per_s_sustained", "rows committed into PostgreSQL, sustained (rows/s)", "%.0f", ">= 5000 single, >= 20000 batch10"),
	several("max_cpu_us_per_review_", pipelineProcs, "", "  CPU us per review at max", "%.0f"),
	one("drain_s", "store caught up after the last send (s)", "%.1f", ""),
	one("max_webhook_p99_ms", "webhook p99 at max (ms)", "%.1f", ""),
	one("max_cpu_cores_machine", "CPU cores busy at max: whole machine", "%.2f", "of 2"),
	one("max_cpu_cores_loadgen", "  loadgen", "%.2f", ""),
	one("max_cpu_cores_receiver", "  receiver", "%.2f", ""),
	one("max_cpu_cores_processor", "  processor", "%.2f", ""),
	one("max_cpu_cores_sink", "  sink", "%.2f", ""),
	one("max_cpu_cores_api", "  api", "%.2f", ""),
	one("max_cpu_cores_kafka", "  Kafka broker", "%.2f", ""),
	one("max_cpu_cores_postgres", "  PostgreSQL", "%.2f", ""),
	one("max_cpu_cores_others", "  the rest of the machine", "%.2f", ""),
	one("steady_offered_reviews_per_s", "open-loop rate (reviews/s, 80% of max)", "%.0f", ""),
	one("webhook_p50_ms", "webhook p50 (ms)", "%.1f", ""),
	one("webhook_p99_ms", "webhook p99 (ms)", "%.1f", "<= 20"),
	one("webhook_p999_ms", "webhook p99.9 (ms)", "%.1f", ""),
	one("freshness_p50_ms", "freshness sent -> visible p50 (ms)", "%.0f", ""),
	one("freshness_p99_ms", "freshness sent -> visible p99 (ms)", "%.0f", "<= 250"),
	one("stored_freshness_p99_ms", "accepted_at -> committed_at p99 (ms)", "%.0f", ""),
	one("read_movies", "reads over movies", "%.0f", ""),
	one("read_rate_per_s", "read API rate during ingest (req/s)", "%.0f", ""),
	one("read_phase_ingest_reviews_per_s", "  ingest meanwhile (reviews/s, 50% of max)", "%.0f", ""),
	one("read_phase_webhook_p99_ms", "  webhook p99 meanwhile (ms)", "%.1f", ""),
	one("read_p50_ms", "read API p50 during ingest (ms)", "%.1f", ""),
	one("read_p99_ms", "read API p99 during ingest (ms)", "%.1f", "<= 15 at 1000/s"),
	one("read_sent_late_p99_ms", "  of which the generator's own lateness: p99 (ms)", "%.1f", ""),
	one("read_api_p99_bound_ms", "  of which inside the api's handler: p99 within (ms, its histogram's bucket)", "%.1f", ""),
	several("read_cpu_us_per_read_", readProcs, "", "  CPU us per read during ingest, ingest's estimated share off", "%.0f"),
	one("read_page_miss_ratio", "  pages the api read from PostgreSQL (cache misses), during ingest", "%.2f", ""),
	one("idle_read_p50_ms", "read API p50, same rate, no ingest (ms)", "%.1f", ""),
	one("idle_read_p99_ms", "read API p99, same rate, no ingest (ms)", "%.1f", ""),
	one("idle_read_sent_late_p99_ms", "  of which the generator's own lateness: p99 (ms)", "%.1f", ""),
	one("idle_read_api_p99_bound_ms", "  of which inside the api's handler: p99 within (ms, its histogram's bucket)", "%.1f", ""),
	several("idle_read_cpu_us_per_read_", readProcs, "", "  CPU us per read, no ingest", "%.0f"),
	one("idle_read_page_miss_ratio", "  pages the api read from PostgreSQL (cache misses), no ingest", "%.2f", ""),
	one("idle_read_floor_cpu_us_per_read", "  bare net/http, same answers and rate: CPU us per read", "%.0f", ""),
	one("idle_read_api_over_floor", "  api / bare net/http", "%.2f", ""),
	one("idle_read_cpu_cores_machine", "  CPU cores per 1,000 reads/s: machine", "%.2f", ""),
	one("idle_read_cpu_cores_api", "    api", "%.2f", ""),
	one("idle_read_cpu_cores_postgres", "    PostgreSQL", "%.2f", ""),
	one("reconcile_records_per_s", "reconcile, whole raw log (records/s)", "%.0f", ""),
}

// ceilingRows close every scenario's table.
var ceilingRows = []row{
	one("kafka_ceiling_records_per_s", "ceiling: bare kafka-go producer (records/s)", "%.0f", ""),
	one("postgres_ceiling_rows_per_s", "ceiling: bare PostgreSQL upserts (rows/s)", "%.0f", ""),
	one("ratio_to_kafka_ceiling", "pipeline / Kafka ceiling", "%.2f", ""),
	one("ratio_to_postgres_ceiling", "pipeline / PostgreSQL ceiling", "%.2f", ""),
}

// lightRows are the rows of the light phase at each rate.
func lightRows(rates []float64) []row {
	var out []row
	for _, r := range rates {
		k := load.LightKey(r)
		head := fmt.Sprintf("light %g/s: ", r)
		// Issue 13's targets: at 20/s the answer and the live event, at
		// 300/s the answer.
		answer, liveP50, liveP99 := "", "", ""
		switch r {
		case 20:
			answer, liveP50, liveP99 = "<= 10", "<= 20", "<= 50"
		case 300:
			answer = "<= 20"
		}
		out = append(out,
			one(k+"webhook_p50_ms", head+"webhook answer p50 (ms)", "%.1f", ""),
			one(k+"webhook_p99_ms", "  webhook answer p99 (ms)", "%.1f", answer),
			one(k+"webhook_p999_ms", "  webhook answer p99.9 (ms)", "%.1f", ""),
			one(k+"live_p50_ms", "  webhook sent -> SSE review event p50 (ms)", "%.1f", liveP50),
			one(k+"live_p99_ms", "  webhook sent -> SSE review event p99 (ms)", "%.1f", liveP99),
			one(k+"live_p999_ms", "  webhook sent -> SSE review event p99.9 (ms)", "%.1f", ""),
			one(k+"live_coverage", "  reviews whose SSE event arrived (share)", "%.3f", "1"),
		)
		for _, h := range load.Hops {
			out = append(out, row{keys: []string{k + h.Name + "_p50_ms", k + h.Name + "_p99_ms"},
				label: "  hop " + h.Name + " p50 / p99 (ms): " + h.Label, format: "%.1f"})
		}
		out = append(out,
			several(k+"cpu_cores_", pipelineProcs, "", "  CPU cores", "%.2f"),
			several(k+"cpu_us_per_review_", pipelineProcs, "", "  CPU us per review", "%.0f"))
	}
	return out
}

// printTables prints a table per scenario: medians [min..max] over its
// runs, and with a baseline the baseline's beside them and the ratio
// current / baseline of the medians; then what limited each run's phases.
func printTables(w io.Writer, rep *report, lightRates []float64) {
	fmt.Fprintf(w, "\nreviewpipe load benchmark, %s, %s CPUs, load average %s at the start and %s at the end (medians; [min..max] over runs)\n",
		rep.Started.Format(time.RFC3339), rep.Host["cpus"], rep.Host["loadavg_start"], rep.Host["loadavg_end"])
	rows := append(append(append([]row{}, pipelineRows...), lightRows(lightRates)...), ceilingRows...)
	for _, s := range rep.Results {
		fmt.Fprintf(w, "\n%s (%d runs", s.Name, countRuns(s.Runs, "current"))
		if s.Baseline != nil {
			fmt.Fprintf(w, " of -bin, %d of -baseline-bin, interleaved", countRuns(s.Runs, "baseline"))
		}
		fmt.Fprintln(w, ")")
		if s.Skipped != "" {
			fmt.Fprintf(w, "  skipped: %s\n", s.Skipped)
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprint(tw, "metric\tcurrent")
		if s.Baseline != nil {
			fmt.Fprint(tw, "\tbaseline\tcurrent/baseline")
		}
		fmt.Fprint(tw, "\ttarget\n")
		for _, r := range rows {
			printRow(tw, r, s)
		}
		tw.Flush()
		printLimits(w, s)
	}
}

func printRow(tw io.Writer, r row, s *scenarioResult) {
	cur, ok := cell(r, s.stats)
	var base string
	if s.Baseline != nil {
		var bok bool
		base, bok = cell(r, *s.Baseline)
		ok = ok || bok
	}
	if !ok {
		return
	}
	fmt.Fprintf(tw, "%s\t%s", r.label, cur)
	if s.Baseline != nil {
		var ratios []string
		for _, k := range r.keys {
			ratios = append(ratios, formatRatio(Ratio(s.Median[k], s.Baseline.Median[k])))
		}
		fmt.Fprintf(tw, "\t%s\t%s", base, strings.Join(ratios, " / "))
	}
	fmt.Fprintf(tw, "\t%s\n", r.target)
}

// cell is a row's figures from st, and whether st has any of them.
func cell(r row, st stats) (string, bool) {
	var parts []string
	any := false
	for _, k := range r.keys {
		v, ok := st.Median[k]
		if !ok {
			parts = append(parts, "-")
			continue
		}
		any = true
		if len(r.keys) == 1 {
			parts = append(parts, fmt.Sprintf(r.format+" ["+r.format+".."+r.format+"]", v, st.Min[k], st.Max[k]))
		} else {
			parts = append(parts, fmt.Sprintf(r.format, v))
		}
	}
	return strings.Join(parts, " / "), any
}

// Ratio is current / baseline, NaN when either is missing or the baseline 0.
func Ratio(cur, base float64) float64 {
	if base == 0 || math.IsNaN(cur) || math.IsNaN(base) {
		return math.NaN()
	}
	return cur / base
}

func formatRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "-"
	}
	return fmt.Sprintf("x%.2f", r)
}

func countRuns(runs []*load.Run, variant string) int {
	n := 0
	for _, r := range runs {
		if r.Variant == variant {
			n++
		}
	}
	return n
}

// printLimits says, per run, what limited each phase.
func printLimits(w io.Writer, s *scenarioResult) {
	for i, r := range s.Runs {
		for _, l := range r.Limits {
			fmt.Fprintf(w, "  run %d (%s), %s phase limited by: %s\n", i+1, r.Variant, l.Phase, l.By)
		}
	}
}
