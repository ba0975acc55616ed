package load

import (
	"context"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// max is the closed-loop phase: Workers senders, each sending the next
// delivery when the answer comes, for Load. It measures reviews accepted
// per second, rows committed per second (the slope of the row count), how
// long the store took to catch up, and each process's CPU per review.
func (ru *runner) max(ctx context.Context) error {
	cfg, m := ru.cfg, ru.m
	ru.logf("  max phase: %d senders, %d review(s) per delivery, %s", cfg.Workers, cfg.K, cfg.Load)
	a := ru.sender("max", Movies, nil)
	rows := sampleRows(ctx, ru.sl, cfg.Load+time.Second)
	profiled := profile(cfg.ProfileDir, cfg.Load, ru.rcv, ru.proc, ru.sink)
	mk := ru.mark()
	samples := a.ClosedLoop(ctx, cfg.Workers, cfg.Load)
	sendTime := time.Since(mk.at)
	accepted := a.Accepted.Load()
	ru.want += accepted
	at, err := ru.settle(ctx, "max")
	if err != nil {
		return err
	}
	elapsed := at.Sub(mk.at).Seconds()
	cores := ru.cores(mk, elapsed)
	for name, v := range cores {
		m["max_cpu_cores_"+name] = v
	}
	ru.r.Rows = <-rows
	for _, err := range <-profiled {
		ru.logf("  profile: %v", err)
	}
	ru.r.MaxWebhooks = Summarize(samples)
	ru.r.MaxLatency = perSecondP99(samples)
	m["max_accepted_reviews_per_s"] = float64(accepted) / sendTime.Seconds()
	m["max_webhook_p99_ms"] = ru.r.MaxWebhooks.P99
	m["rows_per_s_sustained"] = slope(ru.r.Rows, 1, cfg.Load.Seconds())
	n, _ := CountRows(ctx, ru.sl.DB)
	m["rows_per_s_to_drained"] = float64(n) / elapsed
	m["drain_s"] = elapsed - sendTime.Seconds()
	// CPU time over the phase divided by the reviews it committed.
	perUnit(m, "max_cpu_us_per_review_", cores, m["rows_per_s_to_drained"])
	ru.logf("  max phase: %.0f reviews/s accepted, %.0f rows/s sustained into PostgreSQL, drained %.1fs after the last send; CPU cores: machine %.2f, loadgen %.2f, receiver %.2f, processor %.2f, sink %.2f, kafka %.2f, postgres %.2f, others %.2f",
		m["max_accepted_reviews_per_s"], m["rows_per_s_sustained"], m["drain_s"], m["max_cpu_cores_machine"],
		m["max_cpu_cores_loadgen"], m["max_cpu_cores_receiver"], m["max_cpu_cores_processor"], m["max_cpu_cores_sink"],
		m["max_cpu_cores_kafka"], m["max_cpu_cores_postgres"], m["max_cpu_cores_others"])
	ru.limit("max", cores, true)
	ru.maxRate = min(m["rows_per_s_sustained"], m["max_accepted_reviews_per_s"])
	return nil
}

// steady is the open-loop phase at Rate (default 80% of the maximum):
// webhook latency and freshness (sent to the commit notification).
func (ru *runner) steady(ctx context.Context) error {
	cfg, m, r := ru.cfg, ru.m, ru.r
	rate := cfg.Rate
	if rate <= 0 {
		rate = 0.8 * ru.maxRate
	}
	m["steady_offered_reviews_per_s"] = rate
	ru.logf("  steady phase: %.0f reviews/s open loop (%.0f deliveries/s), %s", rate, rate/float64(cfg.K), cfg.Steady)
	sent := &sync.Map{}
	b := ru.sender("steady", Movies, sent)
	mk := ru.mark()
	samples := b.OpenLoop(ctx, rate/float64(cfg.K), cfg.Steady, 4096)
	cores := ru.cores(mk, 0)
	r.Webhooks = Summarize(samples)
	r.Latency = perSecondP99(samples)
	ru.want += b.Accepted.Load()
	if _, err := ru.settle(ctx, "steady"); err != nil {
		return err
	}
	// The last notifications may trail the count by a moment.
	time.Sleep(200 * time.Millisecond)
	r.Freshness = ru.vis.Freshness(sent)
	m["webhook_p50_ms"], m["webhook_p99_ms"], m["webhook_p999_ms"] = r.Webhooks.P50, r.Webhooks.P99, r.Webhooks.P999
	m["webhook_ok_ratio"] = ratio(r.Webhooks.OK, r.Webhooks.Count)
	m["freshness_p50_ms"], m["freshness_p99_ms"] = r.Freshness.P50, r.Freshness.P99
	m["freshness_coverage"] = r.Freshness.Coverage
	if p50, p99, err := StoredFreshness(ctx, ru.sl.DB, "steady"); err == nil {
		m["stored_freshness_p50_ms"], m["stored_freshness_p99_ms"] = p50, p99
	}
	ru.logf("  steady phase: webhook p50 %.1f ms, p99 %.1f ms, freshness p99 %.0f ms", r.Webhooks.P50, r.Webhooks.P99, r.Freshness.P99)
	ru.limit("steady", cores, false)
	return nil
}

// seed gives each of the ReadMovies movies SeedReviews reviews (in
// 10-review deliveries from 16 senders), so that the reads that follow
// answer full pages.
func (ru *runner) seed(ctx context.Context) error {
	movies, per := ru.cfg.ReadMovies, ru.cfg.SeedReviews
	if movies <= 0 || per <= 0 {
		return nil
	}
	ru.logf("  seed phase: %d reviews for each of %d movies", per, movies)
	s := &Sender{Key: ru.key, K: 10, Movies: movies, Prefix: "seed", Client: ru.client}
	s.SendN(ctx, 16, (movies*per+9)/10)
	ru.want += s.Accepted.Load()
	_, err := ru.settle(ctx, "seed")
	return err
}

// reads is the reader at ReadRate over ReadMovies movies, first alone
// (metrics idle_read_*), then while webhooks come at ReadIngest of the
// maximum (read_*): latency, and the CPU the api and PostgreSQL spend per
// read.
func (ru *runner) reads(ctx context.Context) error {
	cfg, m := ru.cfg, ru.m
	movies := cfg.ReadMovies
	if movies <= 0 {
		movies = Movies
	}
	m["read_movies"] = float64(movies)
	ru.logf("  idle read phase: reader at %.0f/s over %d movies, no ingest, %s", cfg.ReadRate, movies, cfg.Steady)
	mk := ru.mark()
	readProfiled := profile(cfg.ProfileDir, cfg.Steady, ru.api)
	before := ru.apiMetrics(ctx)
	idleReads := ru.readPages(ctx, movies)
	idle := Summarize(idleReads)
	m["idle_read_sent_late_p99_ms"] = lateP99(idleReads)
	cores := ru.cores(mk, 0)
	ru.apiReadFigures(ctx, "idle_read_", before)
	for _, err := range <-readProfiled {
		ru.logf("  profile: %v", err)
	}
	ru.readCPU("idle_read_", cores, float64(idle.Count)/time.Since(mk.at).Seconds(), 0)
	m["idle_read_p50_ms"], m["idle_read_p99_ms"], m["idle_read_p999_ms"] = idle.P50, idle.P99, idle.P999
	ru.logf("  idle read phase: read p50 %.1f ms, p99 %.1f ms (sent late: p99 %.1f ms; in the api's handler: 99%% within %s); CPU us per read: api %.0f, postgres %.0f, loadgen %.0f, machine %.0f",
		idle.P50, idle.P99, m["idle_read_sent_late_p99_ms"], bound(m["idle_read_api_p99_bound_ms"]), m["idle_read_cpu_us_per_read_api"], m["idle_read_cpu_us_per_read_postgres"],
		m["idle_read_cpu_us_per_read_loadgen"], m["idle_read_cpu_us_per_read_machine"])
	ru.limit("idle read", cores, false)
	if cfg.Kind == KindHotReads {
		ru.floor(ctx, movies)
	}
	return ru.ingestReads(ctx, movies)
}

// readPages is the reader of a read phase: at ReadRate over movies for
// Steady, in a process of its own with ReaderApart (else, or when that
// process fails, noted in the report's errors, in this one).
func (ru *runner) readPages(ctx context.Context, movies int) []Sample {
	cfg := ru.cfg
	if cfg.ReaderApart {
		exe, err := os.Executable()
		if err == nil {
			var samples []Sample
			if samples, err = ReaderApart(ctx, exe, ru.api.URL(), cfg.ReadRate, movies, cfg.Steady); err == nil {
				return samples
			}
		}
		ru.r.Errors = append(ru.r.Errors, "reader apart: "+err.Error())
	}
	return Reader(ctx, ru.apiClient, cfg.ReadRate, movies, cfg.Steady)
}

// apiMetrics is the api's Prometheus text exposition, or "" when its
// /metrics does not answer.
func (ru *runner) apiMetrics(ctx context.Context) string {
	b, err := opsBody(ctx, ru.api.URL()+"/metrics")
	if err != nil {
		return ""
	}
	return string(b)
}

// apiReadFigures records under prefix what the api's own metrics say of
// the movie-page reads since before (an apiMetrics text): the share it
// read from PostgreSQL (page_miss_ratio), and the bound of its request
// histogram that 99% of them took no longer than (api_p99_bound_ms): the
// time inside its handler, without the waits for a CPU before and after
// it that the reader's own p99 includes.
func (ru *runner) apiReadFigures(ctx context.Context, prefix, before string) {
	after := ru.apiMetrics(ctx)
	if before == "" || after == "" {
		return
	}
	if b, a := parsePageLookups(before), parsePageLookups(after); b != nil && a != nil {
		hit, miss := a["hit"]-b["hit"], a["miss"]-b["miss"]
		if hit+miss > 0 {
			ru.m[prefix+"page_miss_ratio"] = miss / (hit + miss)
		}
	}
	if le, ok := quantileBound(parsePageLatency(before), parsePageLatency(after), 0.99); ok {
		ru.m[prefix+"api_p99_bound_ms"] = le * 1000
	}
}

// pageRoute labels the api's movie-page answers in its request histogram.
const pageRoute = `reviewpipe_api_request_duration_seconds_bucket{code="200",route="GET /v1/movies/{movie_id}/reviews",le="`

// parsePageLatency takes the cumulative bucket counts of the api's 200
// answers to movie-page reads out of its exposition, by upper bound in
// seconds (+Inf included).
func parsePageLatency(text string) map[float64]float64 {
	out := map[float64]float64{}
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, pageRoute)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		l, err1 := strconv.ParseFloat(le, 64)
		c, err2 := strconv.ParseFloat(strings.TrimSpace(count), 64)
		if err1 == nil && err2 == nil {
			out[l] = c
		}
	}
	return out
}

// quantileBound is the smallest bucket bound (seconds) under which at least
// q of the observations between two cumulative histograms fall; ok is false
// when none fell between them, or only the +Inf bucket holds q.
func quantileBound(before, after map[float64]float64, q float64) (le float64, ok bool) {
	total := after[math.Inf(1)] - before[math.Inf(1)]
	if total <= 0 {
		return 0, false
	}
	bounds := make([]float64, 0, len(after))
	for b := range after {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	for _, b := range bounds {
		if math.IsInf(b, 1) {
			break
		}
		if after[b]-before[b] >= q*total {
			return b, true
		}
	}
	return 0, false
}

// lateP99 is the 99th percentile (Quantile, as the reads' own p99) of how
// late the samples were sent, in ms.
func lateP99(samples []Sample) float64 {
	late := make([]float64, len(samples))
	for i, s := range samples {
		late[i] = float64(s.Late) / float64(time.Millisecond)
	}
	slices.Sort(late)
	return Quantile(late, .99)
}

// bound prints an api_p99_bound_ms figure (0: not known).
func bound(ms float64) string {
	if ms <= 0 {
		return "?"
	}
	return strconv.FormatFloat(ms, 'f', -1, 64) + " ms"
}

// opsBody is the body of a 200 answer to opsGet.
func opsBody(ctx context.Context, url string) ([]byte, error) {
	res, err := opsGet(ctx, url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	return io.ReadAll(res.Body)
}

// parsePageLookups takes the movie-page hit and miss counters out of the
// api's Prometheus text exposition; nil when it has neither (an api
// without the answer cache).
func parsePageLookups(text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		for _, result := range []string{"hit", "miss"} {
			prefix := `reviewpipe_api_cache_lookups_total{kind="page",result="` + result + `"} `
			if v, ok := strings.CutPrefix(line, prefix); ok {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					out[result] = f
				}
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// floor measures net/http's own CPU per read at the idle read phase's rate
// (HTTPFloor), with answers the size of the api's, and the api's CPU per
// read over it.
func (ru *runner) floor(ctx context.Context, movies int) {
	cfg, m := ru.cfg, ru.m
	size, err := answerSize(ctx, ru.api.URL()+"/v1/movies/"+MovieID(0)+"/reviews")
	if err == nil {
		exe, e := os.Executable()
		if err = e; err == nil {
			var reads Summary
			m["idle_read_floor_cpu_us_per_read"], reads, err = HTTPFloor(ctx, exe, size, cfg.ReadRate, movies, cfg.Steady)
			m["idle_read_floor_p99_ms"] = reads.P99
		}
	}
	if err != nil {
		ru.r.Errors = append(ru.r.Errors, "http floor: "+err.Error())
		return
	}
	if f := m["idle_read_floor_cpu_us_per_read"]; f > 0 {
		m["idle_read_api_over_floor"] = m["idle_read_cpu_us_per_read_api"] / f
	}
	ru.logf("  http floor: bare net/http answering %d bytes at %.0f/s: %.0f us of CPU per read; the api %.2fx that",
		size, cfg.ReadRate, m["idle_read_floor_cpu_us_per_read"], m["idle_read_api_over_floor"])
}

// answerSize is the length of the body of a GET of url.
func answerSize(ctx context.Context, url string) (int, error) {
	b, err := opsBody(ctx, url)
	return len(b), err
}

// ingestReads is the reader at ReadRate while webhooks come at ReadIngest
// of the maximum.
func (ru *runner) ingestReads(ctx context.Context, movies int) error {
	cfg, m := ru.cfg, ru.m
	ingest := cfg.ReadIngest * ru.maxRate
	m["read_phase_ingest_reviews_per_s"] = ingest
	ru.logf("  read phase: reader at %.0f/s, ingest %.0f reviews/s open loop, %s", cfg.ReadRate, ingest, cfg.Steady)
	c := ru.sender("read", Movies, nil)
	var reads []Sample
	var wg sync.WaitGroup
	mk := ru.mark()
	before := ru.apiMetrics(ctx)
	wg.Go(func() { reads = ru.readPages(ctx, movies) })
	rs := c.OpenLoop(ctx, ingest/float64(cfg.K), cfg.Steady, 4096)
	wg.Wait()
	cores := ru.cores(mk, 0)
	ru.apiReadFigures(ctx, "read_", before)
	ru.want += c.Accepted.Load()
	ru.r.Reads = Summarize(reads)
	m["read_sent_late_p99_ms"] = lateP99(reads)
	m["read_p50_ms"], m["read_p99_ms"], m["read_p999_ms"] = ru.r.Reads.P50, ru.r.Reads.P99, ru.r.Reads.P999
	m["read_ok_ratio"] = ratio(ru.r.Reads.OK, ru.r.Reads.Count)
	m["read_rate_per_s"] = float64(ru.r.Reads.Count) / cfg.Steady.Seconds()
	m["read_phase_webhook_p99_ms"] = Summarize(rs).P99
	// PostgreSQL also writes the ingest meanwhile: take off what the
	// maximum phase measured per review, an estimate.
	ru.readCPU("read_", cores, m["read_rate_per_s"], ingest)
	if _, err := ru.settle(ctx, "read"); err != nil {
		return err
	}
	ru.logf("  read phase: read p50 %.1f ms, p99 %.1f ms (%.0f%% 200; sent late: p99 %.1f ms; in the api's handler: 99%% within %s); CPU us per read: api %.0f, postgres %.0f (ingest's share taken off)",
		ru.r.Reads.P50, ru.r.Reads.P99, 100*m["read_ok_ratio"], m["read_sent_late_p99_ms"], bound(m["read_api_p99_bound_ms"]), m["read_cpu_us_per_read_api"], m["read_cpu_us_per_read_postgres"])
	ru.limit("read", cores, false)
	return nil
}

// readCPU records the CPU per 1,000 reads/s (cores) and per read (us) of
// the api, PostgreSQL, the generator and the machine under prefix. With
// ingest (reviews/s) meanwhile, PostgreSQL's and the machine's share of it
// is estimated from the maximum phase's CPU per review and taken off.
func (ru *runner) readCPU(prefix string, cores map[string]float64, readsPerS, ingest float64) {
	m := ru.m
	for _, name := range []string{"api", "postgres", "loadgen", "machine"} {
		c, ok := cores[name]
		if !ok {
			continue
		}
		if ingest > 0 && name != "api" {
			c = max(0, c-ingest*m["max_cpu_us_per_review_"+name]/1e6)
		}
		if readsPerS > 0 {
			m[prefix+"cpu_cores_"+name] = c / (readsPerS / 1000)
			m[prefix+"cpu_us_per_read_"+name] = CPUMicros(c, readsPerS)
		}
	}
}

// reconcile times bin/reviewctl reconcile over the whole raw log.
func (ru *runner) reconcile(ctx context.Context) error {
	secs, err := reconcile(ctx, ru.sl, ru.cfg.BinDir)
	if err != nil {
		ru.r.Errors = append(ru.r.Errors, "reconcile: "+err.Error())
		return nil
	}
	ru.m["reconcile_s"] = secs
	ru.m["reconcile_records_per_s"] = float64(ru.want) / secs
	ru.logf("  reconcile: %d records in %.1fs, in sync", ru.want, secs)
	return nil
}

// ceilings measure a bare Kafka producer and bare PostgreSQL upserts in the
// same slice, with the services stopped.
func (ru *runner) ceilings(ctx context.Context) {
	cfg, m, sl := ru.cfg, ru.m, ru.sl
	ru.stopListen()
	sl.StopServices()
	kc, err := KafkaCeiling(ctx, sl.Brokers, sl.Names.Topic(kafkax.TopicRaw), cfg.K, cfg.Workers, cfg.Ceiling)
	if err != nil {
		ru.r.Errors = append(ru.r.Errors, "kafka ceiling: "+err.Error())
	}
	pc, err := PostgresCeiling(ctx, sl.DB, 1000, 2, cfg.Ceiling)
	if err != nil {
		ru.r.Errors = append(ru.r.Errors, "postgres ceiling: "+err.Error())
	}
	m["kafka_ceiling_records_per_s"], m["postgres_ceiling_rows_per_s"] = kc, pc
	if rows := m["rows_per_s_sustained"]; rows > 0 && kc > 0 {
		m["ratio_to_kafka_ceiling"] = rows / kc
	}
	if rows := m["rows_per_s_sustained"]; rows > 0 && pc > 0 {
		m["ratio_to_postgres_ceiling"] = rows / pc
	}
	ru.logf("  ceilings: bare producer %.0f records/s, bare upserts %.0f rows/s", kc, pc)
}
