package load

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/reviewpipe/reviewpipe/bench/internal/stack"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
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
	Ceiling     time.Duration // each ceiling's duration
	Drain       time.Duration // longest wait for the store to catch up
	ServiceEnv  []string      // KEY=value added to every service's environment
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
	Errors      []string           `json:"errors,omitempty"`
}

// Do runs one benchmark on a fresh stack slice: a closed-loop phase (how
// many reviews per second reach PostgreSQL, and the CPU each process used),
// an open-loop phase at 80% of that (webhook latency, freshness), an
// open-loop read phase (a reader at ReadRate while webhooks come at
// ReadIngest of the maximum), a reconcile of the whole raw log, then the
// Kafka and PostgreSQL ceilings with the services stopped.
func Do(ctx context.Context, cfg Config) (*Run, error) {
	logf := cfg.Log
	sl, err := stack.New(ctx, cfg.Brokers, cfg.DatabaseURL)
	defer func() {
		if err := sl.Close(); err != nil {
			logf("clean up the stack slice: %v", err)
		}
	}()
	if err != nil {
		return nil, err
	}
	key := []byte("bench-webhook-key-0123456789abcdef")
	secret := webhook.FormatSecret(key)
	var secrets []string
	for _, v := range provider.SecretVars() {
		secrets = append(secrets, v+"="+secret)
	}
	extra := append([]string{}, cfg.ServiceEnv...)
	if cfg.ProfileDir != "" {
		extra = append(extra, "PPROF=true")
	}
	rcv, err := sl.Start(ctx, cfg.BinDir, "receiver", "RECEIVER_ADDR", append(secrets, extra...)...)
	if err != nil {
		return nil, err
	}
	proc, err := sl.Start(ctx, cfg.BinDir, "processor", "PROCESSOR_ADDR", extra...)
	if err != nil {
		return nil, err
	}
	sink, err := sl.Start(ctx, cfg.BinDir, "sink", "SINK_ADDR", extra...)
	if err != nil {
		return nil, err
	}
	api, err := sl.Start(ctx, cfg.BinDir, "api", "API_ADDR", extra...)
	if err != nil {
		return nil, err
	}
	listenCtx, stopListen := context.WithCancel(ctx)
	defer stopListen()
	vis, err := Listen(listenCtx, sl.DatabaseURL)
	if err != nil {
		return nil, err
	}
	client, err := NewClient(rcv.URL(), 1024)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	apiClient, err := NewClient(api.URL(), 1024)
	if err != nil {
		return nil, err
	}
	defer apiClient.Close()
	r := &Run{Metrics: map[string]float64{}}
	m := r.Metrics

	// Phase 1: closed loop, as fast as answers come.
	logf("  max phase: %d senders, %d review(s) per delivery, %s", cfg.Workers, cfg.K, cfg.Load)
	a := &Sender{Key: key, K: cfg.K, Prefix: "max", Client: client}
	rows := sampleRows(ctx, sl, cfg.Load+time.Second)
	profiled := profile(cfg.ProfileDir, cfg.Load, rcv, proc, sink)
	cpu0, busy0 := sl.CPUSeconds(), machineBusy()
	start := time.Now()
	samples := a.ClosedLoop(ctx, cfg.Workers, cfg.Load)
	sendTime := time.Since(start)
	accepted := a.Accepted.Load()
	n, at, err := WaitRows(ctx, sl.DB, accepted, cfg.Drain)
	if err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	elapsed := at.Sub(start).Seconds()
	for name, v := range sl.CPUSeconds() {
		m["max_cpu_cores_"+name] = (v - cpu0[name]) / elapsed
	}
	if busy0 >= 0 {
		m["max_cpu_cores_machine"] = (machineBusy() - busy0) / elapsed
		// Kafka, PostgreSQL and whatever else shares the machine.
		m["max_cpu_cores_others"] = m["max_cpu_cores_machine"]
		for name := range cpu0 {
			m["max_cpu_cores_others"] -= m["max_cpu_cores_"+name]
		}
	}
	r.Rows = <-rows
	for _, err := range <-profiled {
		logf("  profile: %v", err)
	}
	r.MaxWebhooks = Summarize(samples)
	r.MaxLatency = perSecondP99(samples)
	m["max_accepted_reviews_per_s"] = float64(accepted) / sendTime.Seconds()
	m["max_webhook_p99_ms"] = r.MaxWebhooks.P99
	m["rows_per_s_sustained"] = slope(r.Rows, 1, cfg.Load.Seconds())
	if n < accepted {
		r.Errors = append(r.Errors, fmt.Sprintf("max phase: %d of %d accepted reviews in the store after %s", n, accepted, cfg.Drain))
	}
	m["rows_per_s_to_drained"] = float64(n) / elapsed
	m["drain_s"] = elapsed - sendTime.Seconds()
	logf("  max phase: %.0f reviews/s accepted, %.0f rows/s sustained into PostgreSQL, drained %.1fs after the last send; CPU cores: machine %.2f, loadgen %.2f, receiver %.2f, processor %.2f, sink %.2f, kafka %.2f, postgres %.2f, others %.2f",
		m["max_accepted_reviews_per_s"], m["rows_per_s_sustained"], m["drain_s"], m["max_cpu_cores_machine"],
		m["max_cpu_cores_loadgen"], m["max_cpu_cores_receiver"], m["max_cpu_cores_processor"], m["max_cpu_cores_sink"],
		m["max_cpu_cores_kafka"], m["max_cpu_cores_postgres"], m["max_cpu_cores_others"])
	maxRate := min(m["rows_per_s_sustained"], m["max_accepted_reviews_per_s"])
	want := accepted

	// Phase 2: open loop at 80% of the maximum: webhook latency, freshness.
	rate := cfg.Rate
	if rate <= 0 {
		rate = 0.8 * maxRate
	}
	m["steady_offered_reviews_per_s"] = rate
	logf("  steady phase: %.0f reviews/s open loop (%.0f deliveries/s), %s", rate, rate/float64(cfg.K), cfg.Steady)
	sent := &sync.Map{}
	b := &Sender{Key: key, K: cfg.K, Prefix: "steady", Client: client, Sent: sent}
	samples = b.OpenLoop(ctx, rate/float64(cfg.K), cfg.Steady, 4096)
	r.Webhooks = Summarize(samples)
	r.Latency = perSecondP99(samples)
	want += b.Accepted.Load()
	if n, _, err = WaitRows(ctx, sl.DB, want, cfg.Drain); err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	if n < want {
		r.Errors = append(r.Errors, fmt.Sprintf("steady phase: %d of %d accepted reviews in the store after %s", n, want, cfg.Drain))
	}
	// The last notifications may trail the count by a moment.
	time.Sleep(200 * time.Millisecond)
	r.Freshness = vis.Freshness(sent)
	m["webhook_p50_ms"], m["webhook_p99_ms"], m["webhook_p999_ms"] = r.Webhooks.P50, r.Webhooks.P99, r.Webhooks.P999
	m["webhook_ok_ratio"] = ratio(r.Webhooks.OK, r.Webhooks.Count)
	m["freshness_p50_ms"], m["freshness_p99_ms"] = r.Freshness.P50, r.Freshness.P99
	m["freshness_coverage"] = r.Freshness.Coverage
	if p50, p99, err := StoredFreshness(ctx, sl.DB, "steady"); err == nil {
		m["stored_freshness_p50_ms"], m["stored_freshness_p99_ms"] = p50, p99
	}
	logf("  steady phase: webhook p50 %.1f ms, p99 %.1f ms, freshness p99 %.0f ms", r.Webhooks.P50, r.Webhooks.P99, r.Freshness.P99)

	// Phase 3a: the reader alone, for reference (what ingest costs reads).
	logf("  idle read phase: reader at %.0f/s, no ingest, %s", cfg.ReadRate, cfg.Steady)
	cpu0, busy0 = sl.CPUSeconds(), machineBusy()
	idleStart := time.Now()
	readProfiled := profile(cfg.ProfileDir, cfg.Steady, api)
	idle := Summarize(Reader(ctx, apiClient, cfg.ReadRate, cfg.Steady))
	for _, err := range <-readProfiled {
		logf("  profile: %v", err)
	}
	// What reads cost, per 1,000 reads/s: the API, PostgreSQL, the machine.
	per := float64(idle.Count) / time.Since(idleStart).Seconds() / 1000
	for name, v := range sl.CPUSeconds() {
		if name == "api" || name == "postgres" || name == "loadgen" {
			m["idle_read_cpu_cores_"+name] = (v - cpu0[name]) / time.Since(idleStart).Seconds() / per
		}
	}
	if busy0 >= 0 {
		m["idle_read_cpu_cores_machine"] = (machineBusy() - busy0) / time.Since(idleStart).Seconds() / per
	}
	m["idle_read_p50_ms"], m["idle_read_p99_ms"] = idle.P50, idle.P99
	logf("  idle read phase: read p50 %.1f ms, p99 %.1f ms; CPU cores per 1,000 reads/s: machine %.2f, api %.2f, postgres %.2f, loadgen %.2f",
		idle.P50, idle.P99, m["idle_read_cpu_cores_machine"], m["idle_read_cpu_cores_api"], m["idle_read_cpu_cores_postgres"], m["idle_read_cpu_cores_loadgen"])

	// Phase 3b: a reader at a fixed rate while webhooks keep coming.
	ingest := cfg.ReadIngest * maxRate
	m["read_phase_ingest_reviews_per_s"] = ingest
	logf("  read phase: reader at %.0f/s, ingest %.0f reviews/s open loop, %s", cfg.ReadRate, ingest, cfg.Steady)
	c := &Sender{Key: key, K: cfg.K, Prefix: "read", Client: client}
	var reads []Sample
	var wg sync.WaitGroup
	wg.Go(func() { reads = Reader(ctx, apiClient, cfg.ReadRate, cfg.Steady) })
	rs := c.OpenLoop(ctx, ingest/float64(cfg.K), cfg.Steady, 4096)
	wg.Wait()
	want += c.Accepted.Load()
	r.Reads = Summarize(reads)
	m["read_p50_ms"], m["read_p99_ms"] = r.Reads.P50, r.Reads.P99
	m["read_ok_ratio"] = ratio(r.Reads.OK, r.Reads.Count)
	m["read_rate_per_s"] = float64(r.Reads.Count) / cfg.Steady.Seconds()
	m["read_phase_webhook_p99_ms"] = Summarize(rs).P99
	if n, _, err = WaitRows(ctx, sl.DB, want, cfg.Drain); err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	if n < want {
		r.Errors = append(r.Errors, fmt.Sprintf("read phase: %d of %d accepted reviews in the store after %s", n, want, cfg.Drain))
	}
	logf("  read phase: read p50 %.1f ms, p99 %.1f ms (%.0f%% 200)", r.Reads.P50, r.Reads.P99, 100*m["read_ok_ratio"])

	// Reconcile speed: the whole raw log folded and compared with the store.
	if secs, err := reconcile(ctx, sl, cfg.BinDir); err != nil {
		r.Errors = append(r.Errors, "reconcile: "+err.Error())
	} else {
		m["reconcile_s"] = secs
		m["reconcile_records_per_s"] = float64(want) / secs
		logf("  reconcile: %d records in %.1fs, in sync", want, secs)
	}

	// Ceilings, alone on the machine's share: the services are stopped.
	stopListen()
	sl.StopServices()
	kc, err := KafkaCeiling(ctx, sl.Brokers, sl.Names.Topic(kafkax.TopicRaw), cfg.K, cfg.Workers, cfg.Ceiling)
	if err != nil {
		r.Errors = append(r.Errors, "kafka ceiling: "+err.Error())
	}
	pc, err := PostgresCeiling(ctx, sl.DB, 1000, 2, cfg.Ceiling)
	if err != nil {
		r.Errors = append(r.Errors, "postgres ceiling: "+err.Error())
	}
	m["kafka_ceiling_records_per_s"], m["postgres_ceiling_rows_per_s"] = kc, pc
	if kc > 0 {
		m["ratio_to_kafka_ceiling"] = m["rows_per_s_sustained"] / kc
	}
	if pc > 0 {
		m["ratio_to_postgres_ceiling"] = m["rows_per_s_sustained"] / pc
	}
	logf("  ceilings: bare producer %.0f records/s, bare upserts %.0f rows/s", kc, pc)
	return r, nil
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

// fetchProfile saves a CPU profile. The services inherit this process's
// environment, so with OPS_TOKEN set (a shell that sourced .run/env) their
// /debug/pprof/ wants it as the bearer token.
func fetchProfile(url, path string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if tok := os.Getenv("OPS_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
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
