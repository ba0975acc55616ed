// Command loadgen is reviewpipe's load benchmark (`make bench`). For each
// scenario (reviews per delivery) it runs the pipeline several times, each
// on a fresh slice of the running Kafka and PostgreSQL with bin/receiver,
// bin/processor, bin/sink and bin/api as processes, and measures webhook
// latency, rows per second into PostgreSQL, end-to-end freshness, read API
// latency under ingest, and in the same run the ceilings of a bare Kafka
// producer and bare PostgreSQL upserts. It prints a table of medians and
// writes bench/results/<time>.json.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/reviewpipe/reviewpipe/bench/internal/load"
)

type scenario struct {
	Name    string `json:"name"`
	K       int    `json:"reviews_per_delivery"`
	Workers int    `json:"workers"`
}

type scenarioResult struct {
	scenario
	Runs    []*load.Run        `json:"runs"`
	Median  map[string]float64 `json:"median"`
	Min     map[string]float64 `json:"min"`
	Max     map[string]float64 `json:"max"`
	Skipped string             `json:"skipped,omitempty"`
}

type report struct {
	Started  time.Time         `json:"started"`
	Seconds  float64           `json:"seconds"`
	Host     map[string]string `json:"host"`
	Settings map[string]string `json:"settings"`
	Results  []*scenarioResult `json:"scenarios"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	scenarios := fs.String("scenarios", "single,batch10", "comma-separated: single (1 review per delivery), batch10 (10 per delivery), or batchN")
	runs := fs.Int("runs", 3, "runs per scenario (medians are reported)")
	loadDur := fs.Duration("load", 6*time.Second, "closed-loop (maximum) phase per run")
	steady := fs.Duration("steady", 5*time.Second, "each open-loop phase per run (steady, read)")
	rate := fs.Float64("rate", 0, "open-loop reviews/s (0: 80% of the run's maximum)")
	workers := fs.Int("workers", 0, "closed-loop senders (0: 64 for single, 16 for batches)")
	readRate := fs.Float64("read-rate", 1000, "read API requests/s in the read phase")
	readIngest := fs.Float64("read-ingest", 0.5, "webhook rate in the read phase, a fraction of the run's maximum")
	ceiling := fs.Duration("ceiling", 2*time.Second, "duration of each ceiling measurement")
	drain := fs.Duration("drain", 60*time.Second, "longest wait for the store to catch up after a phase")
	budget := fs.Duration("budget", 5*time.Minute, "stop starting runs when the next one would end past this")
	binDir := fs.String("bin", "bin", "where make build put the services")
	out := fs.String("out", "bench/results", "where to write <time>.json")
	profDir := fs.String("pprof", "", "write CPU profiles of receiver, processor and sink over each max phase, and of the api over each idle read phase, into this folder (go tool pprof)")
	var serviceEnv envList
	fs.Var(&serviceEnv, "service-env", "KEY=value given to every service process, not to the load generator (repeatable; e.g. GOGC=200 to compare settings)")
	selfProf := fs.String("cpuprofile", "", "write the load generator's own CPU profile over the whole run to this file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *selfProf != "" {
		f, err := os.Create(*selfProf)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	brokers, dbURL := os.Getenv("KAFKA_BROKERS"), os.Getenv("DATABASE_URL")
	if brokers == "" || dbURL == "" {
		return fmt.Errorf("KAFKA_BROKERS and DATABASE_URL must be set (scripts/bench.sh sets them)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var scs []scenario
	for _, name := range strings.Split(*scenarios, ",") {
		k := 1
		if name != "single" {
			n, err := strconv.Atoi(strings.TrimPrefix(name, "batch"))
			if err != nil || !strings.HasPrefix(name, "batch") || n < 1 || n > 500 {
				return fmt.Errorf("-scenarios: %q is not single or batchN (1..500)", name)
			}
			k = n
		}
		w := *workers
		if w == 0 {
			w = 64
			if k > 1 {
				w = 16
			}
		}
		scs = append(scs, scenario{Name: name, K: k, Workers: w})
	}

	started := time.Now()
	host, _ := os.Hostname()
	rep := &report{
		Started: started.UTC(),
		Host: map[string]string{"hostname": host, "cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version(),
			"os": runtime.GOOS + "/" + runtime.GOARCH, "loadavg_start": loadavg()},
		Settings: map[string]string{"runs": strconv.Itoa(*runs), "load": loadDur.String(), "steady": steady.String(),
			"rate": fmt.Sprint(*rate), "read_rate": fmt.Sprint(*readRate), "read_ingest": fmt.Sprint(*readIngest), "ceiling": ceiling.String(), "kafka_brokers": brokers},
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%5.1fs] "+format+"\n", append([]any{time.Since(started).Seconds()}, args...)...)
	}
	var perRun time.Duration // the longest run so far, to respect the budget
	var failed error
	for _, sc := range scs {
		if failed != nil {
			break
		}
		res := &scenarioResult{scenario: sc}
		rep.Results = append(rep.Results, res)
		for i := range *runs {
			if ctx.Err() != nil {
				break
			}
			if i > 0 && time.Since(started)+perRun > *budget {
				res.Skipped = fmt.Sprintf("%d of %d runs: the next would pass the %s budget", *runs-i, *runs, *budget)
				logf("%s: %s", sc.Name, res.Skipped)
				break
			}
			logf("%s: run %d of %d", sc.Name, i+1, *runs)
			t0 := time.Now()
			r, err := load.Do(ctx, load.Config{
				Brokers: strings.Split(brokers, ","), DatabaseURL: dbURL, BinDir: *binDir,
				K: sc.K, Workers: sc.Workers, Load: *loadDur, Steady: *steady, Rate: *rate,
				ReadRate: *readRate, ReadIngest: *readIngest, Ceiling: *ceiling, Drain: *drain, ProfileDir: *profDir, ServiceEnv: serviceEnv, Log: logf,
			})
			perRun = max(perRun, time.Since(t0))
			if err != nil {
				// Keep what the finished runs measured (e.g. the shared stack
				// was stopped under us): report them, then fail.
				failed = fmt.Errorf("%s run %d: %w", sc.Name, i+1, err)
				res.Skipped = failed.Error()
				logf("%v", failed)
				break
			}
			for _, e := range r.Errors {
				logf("  warning: %s", e)
			}
			res.Runs = append(res.Runs, r)
		}
		res.Median, res.Min, res.Max = aggregate(res.Runs)
	}
	rep.Seconds = time.Since(started).Seconds()
	rep.Host["loadavg_end"] = loadavg()

	printTable(os.Stdout, rep)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	path := filepath.Join(*out, started.UTC().Format("20060102T150405Z")+".json")
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwritten: %s (%.0fs)\n", path, rep.Seconds)
	if err := drawCharts(rep, strings.TrimSuffix(path, ".json")); err != nil {
		logf("charts: %v", err)
	} else {
		fmt.Printf("charts: %s-rows.png, %s-webhook-p99.png\n", strings.TrimSuffix(path, ".json"), strings.TrimSuffix(path, ".json"))
	}
	if failed != nil {
		return failed
	}
	return ctx.Err()
}

// aggregate takes the median, minimum and maximum of every metric over runs.
func aggregate(runs []*load.Run) (med, lo, hi map[string]float64) {
	med, lo, hi = map[string]float64{}, map[string]float64{}, map[string]float64{}
	vals := map[string][]float64{}
	for _, r := range runs {
		for k, v := range r.Metrics {
			vals[k] = append(vals[k], v)
		}
	}
	for k, vs := range vals {
		sort.Float64s(vs)
		n := len(vs)
		if n%2 == 1 {
			med[k] = vs[n/2]
		} else {
			med[k] = (vs[n/2-1] + vs[n/2]) / 2
		}
		lo[k], hi[k] = vs[0], vs[n-1]
	}
	return med, lo, hi
}

// rows of the table: metric name, label, format, target (empty for none).
var rows = []struct{ key, label, format, target string }{
	{"max_accepted_reviews_per_s", "webhooks accepted, max (reviews/s)", "%.0f", ""},
	{"rows_per_s_sustained", "rows committed into PostgreSQL, sustained (rows/s)", "%.0f", ">= 5000 single, >= 20000 batch10"},
	{"drain_s", "store caught up after the last send (s)", "%.1f", ""},
	{"max_webhook_p99_ms", "webhook p99 at max (ms)", "%.1f", ""},
	{"max_cpu_cores_machine", "CPU cores busy at max: whole machine", "%.2f", "of 2"},
	{"max_cpu_cores_loadgen", "  loadgen", "%.2f", ""},
	{"max_cpu_cores_receiver", "  receiver", "%.2f", ""},
	{"max_cpu_cores_processor", "  processor", "%.2f", ""},
	{"max_cpu_cores_sink", "  sink", "%.2f", ""},
	{"max_cpu_cores_api", "  api", "%.2f", ""},
	{"max_cpu_cores_kafka", "  Kafka broker", "%.2f", ""},
	{"max_cpu_cores_postgres", "  PostgreSQL", "%.2f", ""},
	{"max_cpu_cores_others", "  the rest of the machine", "%.2f", ""},
	{"steady_offered_reviews_per_s", "open-loop rate (reviews/s, 80% of max)", "%.0f", ""},
	{"webhook_p50_ms", "webhook p50 (ms)", "%.1f", ""},
	{"webhook_p99_ms", "webhook p99 (ms)", "%.1f", "<= 20"},
	{"webhook_p999_ms", "webhook p99.9 (ms)", "%.1f", ""},
	{"freshness_p50_ms", "freshness sent -> visible p50 (ms)", "%.0f", ""},
	{"freshness_p99_ms", "freshness sent -> visible p99 (ms)", "%.0f", "<= 250"},
	{"stored_freshness_p99_ms", "accepted_at -> committed_at p99 (ms)", "%.0f", ""},
	{"read_rate_per_s", "read API rate during ingest (req/s)", "%.0f", ""},
	{"read_phase_ingest_reviews_per_s", "  ingest meanwhile (reviews/s, 50% of max)", "%.0f", ""},
	{"read_phase_webhook_p99_ms", "  webhook p99 meanwhile (ms)", "%.1f", ""},
	{"read_p50_ms", "read API p50 during ingest (ms)", "%.1f", ""},
	{"read_p99_ms", "read API p99 during ingest (ms)", "%.1f", "<= 15 at 1000/s"},
	{"idle_read_p99_ms", "read API p99, same rate, no ingest (ms)", "%.1f", ""},
	{"idle_read_cpu_cores_machine", "  CPU cores per 1,000 reads/s: machine", "%.2f", ""},
	{"idle_read_cpu_cores_api", "    api", "%.2f", ""},
	{"idle_read_cpu_cores_postgres", "    PostgreSQL", "%.2f", ""},
	{"reconcile_records_per_s", "reconcile, whole raw log (records/s)", "%.0f", ""},
	{"kafka_ceiling_records_per_s", "ceiling: bare kafka-go producer (records/s)", "%.0f", ""},
	{"postgres_ceiling_rows_per_s", "ceiling: bare PostgreSQL upserts (rows/s)", "%.0f", ""},
	{"ratio_to_kafka_ceiling", "pipeline / Kafka ceiling", "%.2f", ""},
	{"ratio_to_postgres_ceiling", "pipeline / PostgreSQL ceiling", "%.2f", ""},
}

func printTable(w io.Writer, rep *report) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nreviewpipe load benchmark, %s, %s CPUs, load average %s at the start and %s at the end (medians; [min..max] over runs)\n\n",
		rep.Started.Format(time.RFC3339), rep.Host["cpus"], rep.Host["loadavg_start"], rep.Host["loadavg_end"])
	fmt.Fprint(tw, "metric")
	for _, s := range rep.Results {
		fmt.Fprintf(tw, "\t%s (%d runs)", s.Name, len(s.Runs))
	}
	fmt.Fprint(tw, "\ttarget\n")
	for _, r := range rows {
		fmt.Fprint(tw, r.label)
		for _, s := range rep.Results {
			v, ok := s.Median[r.key]
			if !ok {
				fmt.Fprint(tw, "\t-")
				continue
			}
			fmt.Fprintf(tw, "\t"+r.format+" ["+r.format+".."+r.format+"]", v, s.Min[r.key], s.Max[r.key])
		}
		fmt.Fprintf(tw, "\t%s\n", r.target)
	}
	tw.Flush()
}

// loadavg is the machine's 1, 5 and 15 minute load averages (/proc/loadavg),
// a measure of how shared the machine was; empty where unknown.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// envList is a repeatable KEY=value flag.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }

func (e *envList) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("want KEY=value, got %q", v)
	}
	*e = append(*e, v)
	return nil
}
