package load

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/reviewpipe/reviewpipe/bench/internal/stack"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

// Config is one benchmark run's settings.
type Config struct {
	Brokers     []string
	DatabaseURL string
	BinDir      string
	K           int           // reviews per delivery
	Workers     int           // closed-loop senders (and Kafka ceiling writers)
	Load        time.Duration // closed-loop (maximum) phase
	Steady      time.Duration // open-loop phase
	Rate        float64       // open-loop reviews/s; 0: 80% of the closed-loop rows/s
	ReadRate    float64       // read API requests/s in the read phase
	ReadIngest  float64       // webhook rate in the read phase, a fraction of the maximum
	ReadMovies  int           // movies the reader asks for (0: Movies)
	SeedReviews int           // KindHotReads: reviews given to each of ReadMovies before the reads
	Kind        string        // KindPipeline, KindLight or KindHotReads
	LightRates  []float64     // KindLight: deliveries/s of each light phase
	LightMovies int           // KindLight: movies the reviews spread over, each with its event stream open
	Light       time.Duration // KindLight: each light phase
	Ceiling     time.Duration // each ceiling's duration
	Drain       time.Duration // longest wait for the store to catch up
	ServiceEnv  []string      // KEY=value added to every service's environment
	IngestNice  int           // nice level of processor and sink, as make run's INGEST_NICE (0: off)
	APIAlone    bool          // the api in a session of its own, as make run starts it (stack.StartAlone)
	ReaderApart bool          // the read phases' reader as a process in a session of its own (ReaderApart)
	ProfileDir  string        // when set, CPU profiles of the max phase (and the api's of the idle read phase) go here
	Log         func(format string, args ...any)
}

// Point is one sample of a time series: seconds since the phase start.
type Point struct {
	T float64 `json:"t"`
	V float64 `json:"v"`
}

// Run is what one run measured. Metrics holds the scalar results under
// stable names (medians are taken per name); the rest is detail.
type Run struct {
	Metrics     map[string]float64 `json:"metrics"`
	MaxWebhooks Summary            `json:"max_phase_webhooks"`
	Webhooks    Summary            `json:"steady_phase_webhooks"`
	Reads       Summary            `json:"steady_phase_reads"`
	Freshness   Freshness          `json:"steady_phase_freshness"`
	Rows        []Point            `json:"max_phase_rows"`      // rows in the store over time
	Latency     []Point            `json:"steady_phase_p99_ms"` // webhook p99 per second
	MaxLatency  []Point            `json:"max_phase_p99_ms"`    // webhook p99 per second
	Light       []LightPhase       `json:"light_phases,omitempty"`
	Limits      []Limit            `json:"limited_by"` // per phase, in order
	Variant     string             `json:"variant,omitempty"`
	Errors      []string           `json:"errors,omitempty"`
}

// Scenario kinds: what a run measures besides the ceilings.
const (
	KindPipeline = ""         // maximum, 80% open loop, reads under ingest, reconcile
	KindLight    = "light"    // open loop at LightRates with the event streams open: latency and per-hop breakdown
	KindHotReads = "hotreads" // maximum, seed, then reads over ReadMovies movies alone and under ingest: CPU per read
)

// Limit is what limited one phase of a run (see Limiter).
type Limit struct {
	Phase string `json:"phase"`
	By    string `json:"by"`
}

// Do runs one benchmark on a fresh stack slice: the phases of cfg.Kind,
// then the Kafka and PostgreSQL ceilings with the services stopped.
func Do(ctx context.Context, cfg Config) (*Run, error) {
	sl, err := stack.New(ctx, cfg.Brokers, cfg.DatabaseURL)
	defer func() {
		if err := sl.Close(); err != nil {
			cfg.Log("clean up the stack slice: %v", err)
		}
	}()
	if err != nil {
		return nil, err
	}
	ru := &runner{cfg: cfg, logf: cfg.Log, sl: sl, key: []byte("bench-webhook-key-0123456789abcdef"),
		r: &Run{Metrics: map[string]float64{}}}
	ru.m = ru.r.Metrics
	defer ru.close()
	if err := ru.start(ctx); err != nil {
		return nil, err
	}
	var phases []func(context.Context) error
	switch cfg.Kind {
	case KindLight:
		phases = []func(context.Context) error{ru.light}
	case KindHotReads:
		phases = []func(context.Context) error{ru.max, ru.seed, ru.reads}
	default:
		phases = []func(context.Context) error{ru.max, ru.steady, ru.reads, ru.reconcile}
	}
	for _, phase := range phases {
		if err := phase(ctx); err != nil {
			return nil, err
		}
	}
	ru.ceilings(ctx)
	return ru.r, nil
}

// runner is one run's state, shared by its phases.
type runner struct {
	cfg        Config
	logf       func(format string, args ...any)
	sl         *stack.Slice
	key        []byte
	rcv, proc  *stack.Proc
	sink, api  *stack.Proc
	vis        *Visibility
	stopListen context.CancelFunc
	client     *Client // to the receiver
	apiClient  *Client
	r          *Run
	m          map[string]float64
	want       int64   // reviews accepted so far: what the store must end up holding
	maxRate    float64 // the maximum phase's sustained reviews/s
}

// start runs the services on the slice and opens the generator's
// connections: the receiver's and the api's clients, and the LISTEN on the
// sink's commit notifications.
func (ru *runner) start(ctx context.Context) error {
	cfg, sl := ru.cfg, ru.sl
	secret := webhook.FormatSecret(ru.key)
	var secrets []string
	for _, v := range provider.SecretVars() {
		secrets = append(secrets, v+"="+secret)
	}
	extra := append([]string{}, cfg.ServiceEnv...)
	if cfg.ProfileDir != "" {
		extra = append(extra, "PPROF=true")
	}
	var err error
	if ru.rcv, err = sl.Start(ctx, cfg.BinDir, "receiver", "RECEIVER_ADDR", append(secrets, extra...)...); err != nil {
		return err
	}
	if ru.proc, err = sl.StartNice(ctx, cfg.IngestNice, cfg.BinDir, "processor", "PROCESSOR_ADDR", extra...); err != nil {
		return err
	}
	if ru.sink, err = sl.StartNice(ctx, cfg.IngestNice, cfg.BinDir, "sink", "SINK_ADDR", extra...); err != nil {
		return err
	}
	startAPI := sl.Start
	if cfg.APIAlone {
		startAPI = sl.StartAlone
	}
	if ru.api, err = startAPI(ctx, cfg.BinDir, "api", "API_ADDR", extra...); err != nil {
		return err
	}
	var listenCtx context.Context
	listenCtx, ru.stopListen = context.WithCancel(ctx)
	if ru.vis, err = Listen(listenCtx, sl.DatabaseURL); err != nil {
		return err
	}
	if ru.client, err = NewClient(ru.rcv.URL(), 1024); err != nil {
		return err
	}
	ru.apiClient, err = NewClient(ru.api.URL(), 1024)
	return err
}

func (ru *runner) close() {
	if ru.stopListen != nil {
		ru.stopListen()
	}
	if ru.client != nil {
		ru.client.Close()
	}
	if ru.apiClient != nil {
		ru.apiClient.Close()
	}
}

// sender is a webhook sender of this run for one phase.
func (ru *runner) sender(prefix string, movies int, sent *sync.Map) *Sender {
	return &Sender{Key: ru.key, K: ru.cfg.K, Movies: movies, Prefix: prefix, Client: ru.client, Sent: sent}
}

// settle waits until the store holds every review accepted so far (or
// Drain passes, which is reported as an error of the run).
func (ru *runner) settle(ctx context.Context, phase string) (time.Time, error) {
	n, at, err := WaitRows(ctx, ru.sl.DB, ru.want, ru.cfg.Drain)
	if err != nil {
		return at, fmt.Errorf("count rows: %w", err)
	}
	if n < ru.want {
		ru.r.Errors = append(ru.r.Errors, fmt.Sprintf("%s phase: %d of %d accepted reviews in the store after %s", phase, n, ru.want, ru.cfg.Drain))
	}
	return at, nil
}

// cpuMark is the CPU time of every process and of the machine at a moment.
type cpuMark struct {
	procs stack.CPUSample
	busy  float64
	at    time.Time
}

func (ru *runner) mark() cpuMark {
	return cpuMark{procs: ru.sl.CPUSample(), busy: machineBusy(), at: time.Now()}
}

// cores is the CPU cores each process (and "machine", "others": the rest
// of the machine, other tenants included) used since mk, over elapsed
// seconds (0: since mk was taken).
func (ru *runner) cores(mk cpuMark, elapsed float64) map[string]float64 {
	if elapsed <= 0 {
		elapsed = time.Since(mk.at).Seconds()
	}
	out := map[string]float64{}
	for name, v := range stack.CPUDelta(mk.procs, ru.sl.CPUSample()) {
		out[name] = v / elapsed
	}
	if mk.busy >= 0 {
		machine := (machineBusy() - mk.busy) / elapsed
		others := machine
		for _, v := range out {
			others -= v
		}
		out["machine"], out["others"] = machine, others
	}
	return out
}

// limit records what limited a phase (see Limiter).
func (ru *runner) limit(phase string, cores map[string]float64, closedLoop bool) {
	procs := map[string]float64{}
	for name, v := range cores {
		if name != "machine" && name != "others" {
			procs[name] = v
		}
	}
	machine, ok := cores["machine"]
	if !ok {
		machine = -1
	}
	l := Limit{Phase: phase, By: Limiter(procs, machine, runtime.NumCPU(), closedLoop)}
	ru.r.Limits = append(ru.r.Limits, l)
	ru.logf("  %s phase limited by: %s", phase, l.By)
}

// perUnit puts cores / rate, in CPU microseconds per unit, under
// prefix+name for every process and the machine.
func perUnit(m map[string]float64, prefix string, cores map[string]float64, rate float64) {
	if rate <= 0 {
		return
	}
	for name, c := range cores {
		m[prefix+name] = CPUMicros(c, rate)
	}
}

// CPUMicros is the CPU microseconds per unit of work of a process using
// cores while rate units per second are done.
func CPUMicros(cores, rate float64) float64 {
	if rate <= 0 {
		return 0
	}
	return cores / rate * 1e6
}

// machineBusy is the machine's busy CPU seconds, or -1 when unknown.
func machineBusy() float64 {
	v, ok := stack.MachineBusySeconds()
	if !ok {
		return -1
	}
	return v
}

// reconcile runs bin/reviewctl reconcile (a dry run) on the slice and
// returns how long it took; drift (exit 1) is an error.
func reconcile(ctx context.Context, sl *stack.Slice, binDir string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "reviewctl"), "reconcile", "--json")
	cmd.Env = append(os.Environ(), sl.Env()...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, tail(out, 400))
	}
	return time.Since(start).Seconds(), nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// sampleRows reads the row count every 250ms for d and sends the series.
func sampleRows(ctx context.Context, sl *stack.Slice, d time.Duration) <-chan []Point {
	out := make(chan []Point, 1)
	go func() {
		var ps []Point
		start := time.Now()
		for time.Since(start) < d && ctx.Err() == nil {
			if n, err := CountRows(ctx, sl.DB); err == nil {
				ps = append(ps, Point{T: time.Since(start).Seconds(), V: float64(n)})
			}
			time.Sleep(250 * time.Millisecond)
		}
		out <- ps
	}()
	return out
}

// slope is the rows per second between the first point at or after from
// and the last point at or before to.
func slope(ps []Point, from, to float64) float64 {
	var a, b *Point
	for i := range ps {
		if a == nil && ps[i].T >= from {
			a = &ps[i]
		}
		if ps[i].T <= to {
			b = &ps[i]
		}
	}
	if a == nil || b == nil || b.T <= a.T {
		return 0
	}
	return (b.V - a.V) / (b.T - a.T)
}

// perSecondP99 is the p99 latency of the samples started in each second.
func perSecondP99(ss []Sample) []Point {
	by := map[int][]Sample{}
	last := 0
	for _, s := range ss {
		sec := int(s.At / time.Second)
		by[sec] = append(by[sec], s)
		last = max(last, sec)
	}
	var out []Point
	for sec := 0; sec <= last; sec++ {
		if len(by[sec]) > 0 {
			out = append(out, Point{T: float64(sec), V: Summarize(by[sec]).P99})
		}
	}
	return out
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// profile fetches a CPU profile of the phase (its length less a second, so
// it ends inside it) from each process's /debug/pprof/profile into
// dir/<name>-<time>.pprof, when dir is set. The channel yields the errors.
func profile(dir string, phase time.Duration, procs ...*stack.Proc) <-chan []error {
	out := make(chan []error, 1)
	if dir == "" {
		out <- nil
		return out
	}
	secs := max(1, int((phase-time.Second)/time.Second))
	stamp := time.Now().UTC().Format("20060102T150405Z")
	go func() {
		var (
			mu   sync.Mutex
			errs []error
			wg   sync.WaitGroup
		)
		for _, p := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				path := filepath.Join(dir, p.Name+"-"+stamp+".pprof")
				if err := fetchProfile(p.URL()+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), path); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		out <- errs
	}()
	return out
}

// opsGet GETs url from a service, with OPS_TOKEN as the bearer token when
// it is set (the services inherit this process's environment, so their
// /metrics and /debug/pprof/ then want it), and returns the answer when it
// is 200; the caller closes its body.
func opsGet(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if tok := os.Getenv("OPS_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return res, nil
}

// fetchProfile saves a CPU profile. The services inherit this process's
// environment, so with OPS_TOKEN set (a shell that sourced .run/env) their
// /debug/pprof/ wants it as the bearer token.
func fetchProfile(url, path string) error {
	res, err := opsGet(context.Background(), url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
