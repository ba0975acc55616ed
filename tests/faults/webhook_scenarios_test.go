package faults

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// pipeline is receiver -> processor(s) -> sink of one scenario.
type pipeline struct {
	receiver   *proc
	processors []*proc
	sink       *proc
	// analytics and api run only when a scenario asks for them
	// (withReaders), so other scenarios keep the machine to the write path.
	analytics *proc
	api       *proc
}

// withReaders starts the analytics consumer and the read API beside the
// pipeline.
func (pl *pipeline) withReaders(t *testing.T, e *env) {
	t.Helper()
	pl.analytics = newProc(t, e, "analytics", "analytics", "ANALYTICS_ADDR")
	pl.api = newProc(t, e, "api", "api", "API_ADDR")
	pl.analytics.start(t, 60*time.Second)
	pl.api.start(t, 60*time.Second)
}

// startPipeline starts the receiver, processors processor instances (the
// first started, the others made but stopped) and the sink.
func startPipeline(t *testing.T, e *env, processors int) *pipeline {
	t.Helper()
	pl := &pipeline{
		receiver: newProc(t, e, "receiver", "receiver", "RECEIVER_ADDR", secretEnv()...),
		sink:     newProc(t, e, "sink", "sink", "SINK_ADDR"),
	}
	for i := 0; i < processors; i++ {
		pl.processors = append(pl.processors, newProc(t, e, "processor", "processor"+string(rune('a'+i)), "PROCESSOR_ADDR"))
	}
	pl.receiver.start(t, 60*time.Second)
	pl.processors[0].start(t, 60*time.Second)
	pl.sink.start(t, 60*time.Second)
	return pl
}

// webhookScenario runs a bounded webhook load against a fresh pipeline
// while fault runs (with the load's start time and the schedule's rng),
// then waits for the pipeline to settle and checks the store.
func webhookScenario(t *testing.T, e *env, processors int, cfg loadConfig, fault func(pl *pipeline, start time.Time, rng *rand.Rand)) *webhookLoad {
	t.Helper()
	return webhookScenarioOn(t, e, startPipeline(t, e, processors), cfg, fault)
}

// webhookScenarioOn is webhookScenario on a pipeline already started. With
// analytics running, it also waits for analytics' lag and checks its
// statistics against the store; with the api, it reads acknowledged
// reviews back through it.
func webhookScenarioOn(t *testing.T, e *env, pl *pipeline, cfg loadConfig, fault func(pl *pipeline, start time.Time, rng *rand.Rand)) *webhookLoad {
	t.Helper()
	m := newModel()
	load := newWebhookLoad(cfg, e.seed, pl.receiver.url, m)
	rng := rand.New(rand.NewPCG(e.seed, 7))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Logf("load: %.0f deliveries/s offered for %s over %d reviews, %d workers; unacknowledged deliveries retried for %s more",
		cfg.rate, cfg.duration, cfg.ids, cfg.workers, cfg.retryFor)
	start := time.Now()
	done := make(chan struct{})
	go func() { load.run(ctx); close(done) }()
	fault(pl, start, rng)
	<-done
	t.Logf("load done after %s: %s", time.Since(start).Round(time.Millisecond), load.summary())
	if tl := load.timeline(); tl != "" {
		t.Logf("seconds with failed attempts: %s", tl)
	}
	var consumers []string
	if pl.analytics != nil {
		consumers = append(consumers, e.names.Group(kafkax.GroupAnalytics))
	}
	took := e.settle(t, 3*time.Minute, consumers...)
	t.Logf("settled (processor, sink %v lag 0) %s after the load", consumers, took.Round(time.Millisecond))
	e.check(t, m)
	if pl.analytics != nil {
		e.checkAnalytics(t)
	}
	if pl.api != nil {
		e.checkAPI(t, pl.api)
	}
	return load
}

// sleepUntil sleeps until at.
func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }

// between returns a duration in [lo, hi) from rng.
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

func defaultLoad(e *env) loadConfig {
	return loadConfig{
		rate:     pick(e, 40.0, 100.0),
		duration: pick(e, 15*time.Second, 30*time.Second),
		ids:      pick(e, 200, 500),
		workers:  8,
		retryFor: 90 * time.Second,
	}
}

// Scenario 1: kill -9 of the receiver, the processor, the sink, the
// analytics consumer and the read API in turn, each restarted after a short
// outage, under load.
func TestFaultServiceKill(t *testing.T) {
	e := setup(t)
	cfg := defaultLoad(e)
	pl := startPipeline(t, e, 1)
	pl.withReaders(t, e)
	webhookScenarioOn(t, e, pl, cfg, func(pl *pipeline, start time.Time, rng *rand.Rand) {
		victims := []*proc{pl.receiver, pl.processors[0], pl.sink, pl.analytics, pl.api}
		window := cfg.duration / time.Duration(len(victims))
		for i, p := range victims {
			at := start.Add(time.Duration(i)*window + between(rng, window/5, window/2))
			down := between(rng, 200*time.Millisecond, 3*time.Second)
			sleepUntil(at)
			t.Logf("+%s kill -9 %s; restart after %s", time.Since(start).Round(time.Millisecond), p.label, down)
			p.kill9()
			time.Sleep(down)
			restarted := time.Now()
			p.start(t, 60*time.Second)
			t.Logf("+%s %s ready again (%s after its restart)", time.Since(start).Round(time.Millisecond), p.label, time.Since(restarted).Round(time.Millisecond))
		}
	})
}

// Scenario 2: kill -9 of one broker of the three (RF 3, min.insync.replicas
// 2), restarted after 6 to 12 s (long enough for the controller to fence it
// and move its leaders); full size does it twice, to two different brokers,
// then kills two brokers at once for a few seconds (below min ISR: the
// receiver must answer 503, never 2xx, and lose nothing it acknowledged).
func TestFaultBrokerKill(t *testing.T) {
	e := setup(t)
	cfg := defaultLoad(e)
	cfg.duration = pick(e, 20*time.Second, 45*time.Second)
	rounds := pick(e, 1, 3)
	down := map[int]bool{}
	t.Cleanup(func() { // never leave the cluster short of a broker
		for n := range down {
			e.kafkaNode(t, "start-node", n)
		}
	})
	probe := e.probeTopic(t)
	webhookScenario(t, e, 1, cfg, func(pl *pipeline, start time.Time, rng *rand.Rand) {
		nodes := rng.Perm(3)
		window := cfg.duration / time.Duration(rounds)
		for r := 0; r < rounds; r++ {
			victims := []int{nodes[r%3] + 1}
			outage := between(rng, 6*time.Second, 12*time.Second)
			if r == 2 {
				victims = append(victims, nodes[(r+1)%3]+1)
				outage = between(rng, 3*time.Second, 6*time.Second)
			}
			sleepUntil(start.Add(time.Duration(r)*window + between(rng, window/10, window/5)))
			t.Logf("+%s kill -9 broker(s) %v; start after %s", time.Since(start).Round(time.Millisecond), victims, outage)
			for _, n := range victims {
				e.kafkaNode(t, "kill-node", n)
				down[n] = true
			}
			time.Sleep(outage)
			for _, n := range victims {
				e.kafkaNode(t, "start-node", n)
			}
			back := time.Now()
			e.waitBrokers(t, 2*time.Minute)
			e.waitFullISR(t, 2*time.Minute)
			writable := e.waitWritable(t, probe, 2*time.Minute)
			t.Logf("+%s a fresh acks=all producer writes every partition again (%s after the start)",
				time.Since(start).Round(time.Millisecond), writable.Round(time.Millisecond))
			for _, n := range victims {
				delete(down, n)
			}
			t.Logf("+%s broker(s) %v back in every ISR of the scenario's topics (%s after the start)",
				time.Since(start).Round(time.Millisecond), victims, time.Since(back).Round(time.Millisecond))
		}
	})
}

// probeTopic creates a topic (RF 3, 6 partitions) outside the pipeline,
// for waitWritable; cleanup removes it.
func (e *env) probeTopic(t *testing.T) string {
	t.Helper()
	specs := []kafkax.TopicSpec{{Topic: "faults.probe", Partitions: kafkax.DefaultPartitions, Retention: time.Hour}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := kafkax.EnsureTopics(ctx, e.brokers, e.names, specs, replication); err != nil {
		t.Fatalf("create probe topic: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = kafkax.DeleteTopics(ctx, e.brokers, e.names, specs)
	})
	return e.names.Topic("faults.probe")
}

// waitWritable waits until a new producer (fresh metadata, acks=all) writes
// one record to every partition of topic, and returns how long it took.
func (e *env) waitWritable(t *testing.T, topic string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: topic, Balancer: &kafka.RoundRobin{},
			RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, WriteTimeout: 3 * time.Second, MaxAttempts: 1}
		msgs := make([]kafka.Message, kafkax.DefaultPartitions)
		for i := range msgs {
			msgs[i] = kafka.Message{Value: []byte("probe")}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := w.WriteMessages(ctx, msgs...)
		cancel()
		_ = w.Close()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("Kafka not writable with acks=all %s after the brokers' start: %v", limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitBrokers waits until the cluster's metadata lists all three brokers.
func (e *env) waitBrokers(t *testing.T, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if err := kafkax.WaitReady(ctx, e.brokers, replication); err != nil {
		t.Fatal(err)
	}
}

// waitFullISR waits until every partition of the scenario's topics has its
// three replicas in sync again.
func (e *env) waitFullISR(t *testing.T, limit time.Duration) {
	t.Helper()
	var topics []string
	for _, s := range kafkax.Specs(kafkax.DefaultPartitions) {
		topics = append(topics, e.names.Topic(s.Topic))
	}
	deadline := time.Now().Add(limit)
	for {
		// A client of its own each time: kafka-go's shared transport
		// answers metadata from its cache, which would show old ISRs.
		c, done := kafkax.NewAdminClient(e.brokers, 5*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
		cancel()
		done()
		short := -1
		if err == nil {
			short = 0
			for _, tp := range md.Topics {
				for _, p := range tp.Partitions {
					if len(p.Isr) < replication || p.Leader.Host == "" {
						short++
					}
				}
			}
			if short == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions short of a full ISR after %s: %d (%v)", limit, short, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Scenario 3: the PostgreSQL instance stopped in immediate mode (no
// checkpoint, crash recovery on start) under load, started after a few
// seconds; full size does it twice.
func TestFaultPostgresRestart(t *testing.T) {
	e := setup(t)
	cfg := defaultLoad(e)
	rounds := pick(e, 1, 2)
	t.Cleanup(func() { // never leave the fault PostgreSQL stopped
		if e.pgCtl("status") != nil {
			if err := e.pgStart(); err != nil {
				t.Logf("start PostgreSQL in cleanup: %v", err)
			}
		}
	})
	webhookScenario(t, e, 1, cfg, func(pl *pipeline, start time.Time, rng *rand.Rand) {
		window := cfg.duration / time.Duration(rounds)
		for r := 0; r < rounds; r++ {
			sleepUntil(start.Add(time.Duration(r)*window + between(rng, window/5, window/2)))
			down := between(rng, 1*time.Second, 6*time.Second)
			t.Logf("+%s PostgreSQL stop -m immediate; start after %s", time.Since(start).Round(time.Millisecond), down)
			if err := e.pgStopImmediate(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(down)
			began := time.Now()
			if err := e.pgStart(); err != nil {
				t.Fatal(err)
			}
			t.Logf("+%s PostgreSQL accepting connections (start took %s)", time.Since(start).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
		}
	})
}

// Scenario 4: a rebalance storm: up to three processor instances, one of
// them started, stopped (SIGTERM) or killed (-9) every 1.5 to 4 s while the
// load runs; at least one keeps running.
func TestFaultRebalanceStorm(t *testing.T) {
	e := setup(t)
	cfg := defaultLoad(e)
	webhookScenario(t, e, 3, cfg, func(pl *pipeline, start time.Time, rng *rand.Rand) {
		end := start.Add(cfg.duration)
		changes := 0
		for {
			time.Sleep(between(rng, 1500*time.Millisecond, 4*time.Second))
			if time.Now().After(end) {
				break
			}
			var up, down []*proc
			for _, p := range pl.processors {
				if p.running() {
					up = append(up, p)
				} else {
					down = append(down, p)
				}
			}
			changes++
			switch {
			case len(down) > 0 && (len(up) <= 1 || rng.IntN(2) == 0):
				p := down[rng.IntN(len(down))]
				t.Logf("+%s start %s (%d running)", time.Since(start).Round(time.Millisecond), p.label, len(up))
				p.start(t, 60*time.Second)
			default:
				p := up[rng.IntN(len(up))]
				if rng.IntN(2) == 0 {
					t.Logf("+%s kill -9 %s (%d running)", time.Since(start).Round(time.Millisecond), p.label, len(up))
					p.kill9()
				} else {
					t.Logf("+%s SIGTERM %s (%d running)", time.Since(start).Round(time.Millisecond), p.label, len(up))
					if !p.stop() {
						t.Errorf("%s did not stop on SIGTERM within 20s", p.label)
					}
				}
			}
		}
		t.Logf("%d membership changes during the load", changes)
	})
}

// Scenario 7: one broker frozen (SIGSTOP) for 10 to 15 s, then resumed: its
// processes and connections stay up but it answers nothing, as a broker
// cut off by a network partition does (nothing is refused, requests hang
// until their timeouts). The controller fences it once its session lapses
// (9 s) and moves its leaders; when it resumes it must catch up and rejoin
// every ISR. No acknowledged delivery may be lost.
func TestFaultBrokerPause(t *testing.T) {
	e := setup(t)
	cfg := defaultLoad(e)
	cfg.duration = pick(e, 25*time.Second, 45*time.Second)
	paused := 0
	t.Cleanup(func() { // never leave a broker frozen
		if paused != 0 {
			e.kafkaNode(t, "resume-node", paused)
		}
	})
	webhookScenario(t, e, 1, cfg, func(pl *pipeline, start time.Time, rng *rand.Rand) {
		victim := 1 + rng.IntN(3)
		frozen := between(rng, 10*time.Second, 15*time.Second)
		sleepUntil(start.Add(between(rng, cfg.duration/10, cfg.duration/5)))
		t.Logf("+%s SIGSTOP broker %d; SIGCONT after %s", time.Since(start).Round(time.Millisecond), victim, frozen)
		e.kafkaNode(t, "pause-node", victim)
		paused = victim
		time.Sleep(frozen)
		e.kafkaNode(t, "resume-node", victim)
		paused = 0
		resumed := time.Now()
		e.waitBrokers(t, 2*time.Minute)
		e.waitFullISR(t, 2*time.Minute)
		t.Logf("+%s broker %d back in every ISR of the scenario's topics (%s after SIGCONT)",
			time.Since(start).Round(time.Millisecond), victim, time.Since(resumed).Round(time.Millisecond))
	})
}
