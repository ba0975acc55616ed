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
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/reviewpipe/reviewpipe/bench/internal/load"
)

type scenario struct {
	Name        string `json:"name"`
	Kind        string `json:"kind,omitempty"` // load.Kind*
	K           int    `json:"reviews_per_delivery"`
	Workers     int    `json:"workers"`
	ReadMovies  int    `json:"read_movies,omitempty"`
	SeedReviews int    `json:"seed_reviews,omitempty"`
}

// stats are the median, minimum and maximum of every metric over runs.
type stats struct {
	Median map[string]float64 `json:"median"`
	Min    map[string]float64 `json:"min"`
	Max    map[string]float64 `json:"max"`
}

type scenarioResult struct {
	scenario
	Runs []*load.Run `json:"runs"` // in the order run, baseline and current interleaved
	stats
	Baseline *stats `json:"baseline,omitempty"` // over the runs of -baseline-bin
	Skipped  string `json:"skipped,omitempty"`
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

// options are the command line's settings.
type options struct {
	scenarios, binDir, baseBin, out, profDir, selfProf string
	runs                                               int
	lightRates                                         []float64
	hotMovies, hotReviews, lightMovies                 int
	budget                                             time.Duration
	cfg                                                load.Config // the settings shared by every run
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&o.scenarios, "scenarios", "single,batch10,light,hotreads", "comma-separated: single (1 review per delivery), batch10 (10 per delivery) or batchN: maximum, 80% open loop, reads, reconcile; light: open loop at -light-rates with event streams open, per-hop breakdown; hotreads: reads over -hot-movies movies, CPU per read")
	fs.IntVar(&o.runs, "runs", 3, "runs per scenario (medians are reported); with -baseline-bin, runs of each")
	fs.DurationVar(&o.cfg.Load, "load", 6*time.Second, "closed-loop (maximum) phase per run")
	fs.DurationVar(&o.cfg.Steady, "steady", 5*time.Second, "each open-loop phase per run (steady, read)")
	fs.Float64Var(&o.cfg.Rate, "rate", 0, "open-loop reviews/s (0: 80% of the run's maximum)")
	workers := fs.Int("workers", 0, "closed-loop senders (0: 64 for single, 16 for batches)")
	fs.Float64Var(&o.cfg.ReadRate, "read-rate", 1000, "read API requests/s in the read phases")
	fs.Float64Var(&o.cfg.ReadIngest, "read-ingest", 0.5, "webhook rate in the read phase, a fraction of the run's maximum")
	fs.IntVar(&o.hotMovies, "hot-movies", 100, "hotreads: movies the reader asks for (they have reviews from the maximum phase)")
	fs.IntVar(&o.hotReviews, "hot-reviews", 20, "hotreads: reviews given to each hot movie before the reads")
	rates := fs.String("light-rates", "20,200", "light: deliveries/s of each light phase (single-review deliveries, open loop)")
	fs.IntVar(&o.lightMovies, "light-movies", 10, "light: movies the reviews spread over, each with its event stream open")
	fs.DurationVar(&o.cfg.Light, "light", 5*time.Second, "light: each light phase")
	fs.DurationVar(&o.cfg.Ceiling, "ceiling", 2*time.Second, "duration of each ceiling measurement")
	fs.DurationVar(&o.cfg.Drain, "drain", 60*time.Second, "longest wait for the store to catch up after a phase")
	fs.DurationVar(&o.budget, "budget", 10*time.Minute, "stop starting runs when the next one would end past this")
	fs.StringVar(&o.binDir, "bin", "bin", "where make build put the services")
	fs.StringVar(&o.baseBin, "baseline-bin", "", "binaries of a baseline (e.g. the previous commit: bench/baseline.sh builds them): each scenario alternates runs between them and -bin, and every figure gets its ratio current/baseline")
	fs.StringVar(&o.out, "out", "bench/results", "where to write <time>.json")
	fs.StringVar(&o.profDir, "pprof", "", "write CPU profiles of receiver, processor and sink over each max phase, and of the api over each idle read phase, into this folder (go tool pprof)")
	var serviceEnv envList
	fs.Var(&serviceEnv, "service-env", "KEY=value given to every service process, not to the load generator (repeatable; e.g. GOGC=200 to compare settings)")
	fs.IntVar(&o.cfg.IngestNice, "ingest-nice", ingestNice(),
		"nice level of processor and sink (0: off); default INGEST_NICE, else 10, as make run starts them")
	fs.BoolVar(&o.cfg.APIAlone, "api-alone", true,
		"start the api in a session of its own, as make run does (its own scheduling group under Linux autogroup); false: in the generator's, with the other services")
	fs.BoolVar(&o.cfg.ReaderApart, "reader-apart", false,
		"read phases: the reader as a process in a session of its own, as a client on another machine would be (its CPU is then not the generator's); default: a goroutine of the generator")
	fs.StringVar(&o.selfProf, "cpuprofile", "", "write the load generator's own CPU profile over the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.cfg.IngestNice < 0 || o.cfg.IngestNice > 19 {
		return nil, fmt.Errorf("-ingest-nice: %d is not 0 to 19", o.cfg.IngestNice)
	}
	for _, f := range strings.Split(*rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("-light-rates: %q is not a positive rate", f)
		}
		o.lightRates = append(o.lightRates, r)
	}
	o.cfg.ServiceEnv, o.cfg.ProfileDir = serviceEnv, o.profDir
	o.cfg.LightRates, o.cfg.LightMovies = o.lightRates, o.lightMovies
	o.cfg.Workers = *workers
	return o, nil
}

// parseScenarios turns -scenarios into scenarios.
func (o *options) parseScenarios() ([]scenario, error) {
	var scs []scenario
	for _, name := range strings.Split(o.scenarios, ",") {
		sc := scenario{Name: name, K: 1}
		switch name {
		case "single":
		case load.KindLight:
			sc.Kind = load.KindLight
		case load.KindHotReads:
			sc.Kind, sc.ReadMovies, sc.SeedReviews = load.KindHotReads, o.hotMovies, o.hotReviews
		default:
			n, err := strconv.Atoi(strings.TrimPrefix(name, "batch"))
			if err != nil || !strings.HasPrefix(name, "batch") || n < 1 || n > 500 {
				return nil, fmt.Errorf("-scenarios: %q is not single, batchN (1..500), light or hotreads", name)
			}
			sc.K = n
		}
		sc.Workers = o.cfg.Workers
		if sc.Workers == 0 {
			sc.Workers = 64
			if sc.K > 1 {
				sc.Workers = 16
			}
		}
		scs = append(scs, sc)
	}
	return scs, nil
}

func run() error {
	if len(os.Args) == 3 && os.Args[1] == load.FloorFlag {
		size, err := strconv.Atoi(os.Args[2])
		if err != nil {
			return err
		}
		return load.ServeFloor(size)
	}
	if len(os.Args) > 1 && os.Args[1] == load.ReaderFlag {
		base, rate, movies, d, err := load.ParseReaderArgs(os.Args[2:])
		if err != nil {
			return err
		}
		return load.ServeReader(context.Background(), base, rate, movies, d, os.Stdout)
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		return err
	}
	if o.selfProf != "" {
		f, err := os.Create(o.selfProf)
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
	o.cfg.Brokers, o.cfg.DatabaseURL = strings.Split(brokers, ","), dbURL
	scs, err := o.parseScenarios()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := newReport(o, brokers)
	b := &bench{o: o, rep: rep}
	for _, sc := range scs {
		if b.failed != nil || ctx.Err() != nil {
			break
		}
		b.scenario(ctx, sc)
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	rep.Host["loadavg_end"] = loadavg()
	printTables(os.Stdout, rep, o.lightRates)
	if err := writeReport(rep, o.out, b.logf); err != nil {
		return err
	}
	if b.failed != nil {
		return b.failed
	}
	return ctx.Err()
}

// ingestNice is INGEST_NICE when it is set, else make run's default, 10.
func ingestNice() int {
	if n, err := strconv.Atoi(os.Getenv("INGEST_NICE")); err == nil {
		return n
	}
	return 10
}

func newReport(o *options, brokers string) *report {
	host, _ := os.Hostname()
	rep := &report{
		Started: time.Now().UTC(),
		Host: map[string]string{"hostname": host, "cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version(),
			"os": runtime.GOOS + "/" + runtime.GOARCH, "loadavg_start": loadavg()},
		Settings: map[string]string{"runs": strconv.Itoa(o.runs), "load": o.cfg.Load.String(), "steady": o.cfg.Steady.String(),
			"rate": fmt.Sprint(o.cfg.Rate), "read_rate": fmt.Sprint(o.cfg.ReadRate), "read_ingest": fmt.Sprint(o.cfg.ReadIngest),
			"ceiling": o.cfg.Ceiling.String(), "kafka_brokers": brokers, "bin": o.binDir, "baseline_bin": o.baseBin,
			"light_rates": fmt.Sprint(o.lightRates), "light": o.cfg.Light.String(), "light_movies": strconv.Itoa(o.lightMovies),
			"hot_movies": strconv.Itoa(o.hotMovies), "hot_reviews": strconv.Itoa(o.hotReviews),
			"ingest_nice": strconv.Itoa(o.cfg.IngestNice), "api_alone": strconv.FormatBool(o.cfg.APIAlone), "reader_apart": strconv.FormatBool(o.cfg.ReaderApart)},
	}
	return rep
}

// bench runs the scenarios one after the other.
type bench struct {
	o      *options
	rep    *report
	perRun time.Duration // the longest run so far, to respect the budget
	failed error
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%5.1fs] "+format+"\n", append([]any{time.Since(b.rep.Started).Seconds()}, args...)...)
}

// scenario runs sc -runs times, and as many times on the baseline's
// binaries when there is one, alternating (base, current, current, base,
// ...: a drift of the machine over the runs weighs on both alike).
func (b *bench) scenario(ctx context.Context, sc scenario) {
	res := &scenarioResult{scenario: sc}
	b.rep.Results = append(b.rep.Results, res)
	defer func() {
		res.stats = aggregate(res.Runs, "current")
		if b.o.baseBin != "" {
			base := aggregate(res.Runs, "baseline")
			res.Baseline = &base
		}
	}()
	variants := []string{"current"}
	if b.o.baseBin != "" {
		variants = []string{"baseline", "current"}
	}
	total := b.o.runs * len(variants)
	for i := range total {
		if ctx.Err() != nil {
			return
		}
		if i > 0 && time.Since(b.rep.Started)+b.perRun > b.o.budget {
			res.Skipped = fmt.Sprintf("%d of %d runs: the next would pass the %s budget", total-i, total, b.o.budget)
			b.logf("%s: %s", sc.Name, res.Skipped)
			return
		}
		variant := variants[variantIndex(i, len(variants))]
		if err := b.one(ctx, res, variant, i, total); err != nil {
			// Keep what the finished runs measured (e.g. the shared stack
			// was stopped under us): report them, then fail.
			b.failed = fmt.Errorf("%s run %d: %w", sc.Name, i+1, err)
			res.Skipped = b.failed.Error()
			b.logf("%v", b.failed)
			return
		}
	}
}

// variantIndex is the variant of run i of n variants: 0, 1, 1, 0, 0, 1,
// ... for two (each pair reversed from the last), 0, 0, ... for one.
func variantIndex(i, n int) int { return (i + i/n) % n }

func (b *bench) one(ctx context.Context, res *scenarioResult, variant string, i, total int) error {
	sc := res.scenario
	b.logf("%s: run %d of %d (%s binaries)", sc.Name, i+1, total, variant)
	cfg := b.o.cfg
	cfg.BinDir = b.o.binDir
	if variant == "baseline" {
		cfg.BinDir = b.o.baseBin
	}
	cfg.K, cfg.Workers, cfg.Kind, cfg.Log = sc.K, sc.Workers, sc.Kind, b.logf
	cfg.ReadMovies, cfg.SeedReviews = sc.ReadMovies, sc.SeedReviews
	t0 := time.Now()
	r, err := load.Do(ctx, cfg)
	b.perRun = max(b.perRun, time.Since(t0))
	if err != nil {
		return err
	}
	r.Variant = variant
	for _, e := range r.Errors {
		b.logf("  warning: %s", e)
	}
	res.Runs = append(res.Runs, r)
	return nil
}

func writeReport(rep *report, dir string, logf func(string, ...any)) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, rep.Started.Format("20060102T150405Z")+".json")
	bs, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, bs, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwritten: %s (%.0fs)\n", path, rep.Seconds)
	base := strings.TrimSuffix(path, ".json")
	if err := drawCharts(rep, base); err != nil {
		logf("charts: %v", err)
	} else {
		fmt.Printf("charts: %s-rows.png, %s-webhook-p99.png\n", base, base)
	}
	return nil
}

// aggregate takes the median, minimum and maximum of every metric over the
// runs of variant.
func aggregate(runs []*load.Run, variant string) stats {
	st := stats{Median: map[string]float64{}, Min: map[string]float64{}, Max: map[string]float64{}}
	vals := map[string][]float64{}
	for _, r := range runs {
		if r.Variant != variant {
			continue
		}
		for k, v := range r.Metrics {
			vals[k] = append(vals[k], v)
		}
	}
	for k, vs := range vals {
		st.Median[k], st.Min[k], st.Max[k] = median(vs)
	}
	return st
}

// median of vs (sorted in place), with their minimum and maximum.
func median(vs []float64) (med, lo, hi float64) {
	if len(vs) == 0 {
		return 0, 0, 0
	}
	sort.Float64s(vs)
	n := len(vs)
	if n%2 == 1 {
		med = vs[n/2]
	} else {
		med = (vs[n/2-1] + vs[n/2]) / 2
	}
	return med, vs[0], vs[n-1]
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
