// Package processor turns raw provider events into canonical review changes:
// it consumes reviews.raw.v1 as the consumer group reviewpipe.processor,
// normalizes each record with its provider's adapter, drops duplicates and
// stale versions against keyed state kept per input partition, and writes
// the surviving changes to reviews.normalized.v1 in order per key. Records
// that can never be processed go to reviews.dlq.v1.
//
// # Steps of a batch
//
// Each assigned partition has a worker; a batch of its records goes
// through one file's step each:
//
//   - processor_normalize.go: envelope, adapter, canonical event, or a
//     permanent failure with its dead-letter reason;
//   - processor_dedupe.go: the keyed-state decision (pkg/dedupe), staged in
//     an overlay of the partition's store;
//   - processor_changelog.go: the staged state to reviews.processor-state.v1
//     (same partition number, key = review key), and its restore on
//     assignment;
//   - processor_output.go: normalized records, headers copied from the raw
//     record;
//   - processor_deadletter.go: dead letters with the original bytes.
//
// Handle writes the changelog first, then the outputs and dead letters, each
// synchronously with acks=all, and returns nil only then, so RunGroup
// commits the input offset after everything is durable. Changelog before
// outputs is deliberate: a crash between them leaves the state ahead of the
// outputs, and the changes the uncommitted records set are sent again when
// those records come again (dedupe.Resend), so a key's stream never goes
// back to an older version; outputs first would re-emit a batch's older
// versions after its newer ones.
package processor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// Config configures a Processor.
type Config struct {
	// Brokers are the Kafka bootstrap addresses.
	Brokers []string
	// Names resolves topic and group names (a namespace in tests).
	Names kafkax.Names
	// MaxBatch bounds the records of one batch (default 500).
	MaxBatch int
	// Linger, when above 0, is how long a batch waits for one more record
	// (default 0: a batch is what arrived while the last one was handled;
	// see kafkax.GroupConfig).
	Linger time.Duration
	// WriteTimeout bounds each batch's Kafka writes together (default
	// 30s); past it the batch fails and is retried.
	WriteTimeout time.Duration
	// RestoreStall is how long a restore waits for the next changelog
	// record before it gives up and the open is retried (default 30s).
	RestoreStall time.Duration
}

// Validate fills defaults and checks the config.
func (c *Config) Validate() error {
	if c.MaxBatch == 0 {
		c.MaxBatch = 500
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.RestoreStall == 0 {
		c.RestoreStall = 30 * time.Second
	}
	switch {
	case len(c.Brokers) == 0:
		return errors.New("processor: no Kafka brokers configured (KAFKA_BROKERS)")
	case c.MaxBatch < 1:
		return fmt.Errorf("processor: MaxBatch must be at least 1, got %d", c.MaxBatch)
	}
	return nil
}

// Writer is what the processor needs of a Kafka writer: a synchronous,
// acks=all WriteMessages that returns only once every record is
// acknowledged (kafkax.NewWriter).
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Writers are the outputs of one partition's worker.
type Writers struct {
	// Normalized writes reviews.normalized.v1, partitioned by key with murmur2.
	Normalized Writer
	// DLQ writes reviews.dlq.v1.
	DLQ Writer
	// Changelog writes reviews.processor-state.v1 to the partition each
	// message names: the input partition's number.
	Changelog Writer
}

// Outputs makes the writers one group generation's workers share, and a
// function that closes them. The processor calls it when the generation's
// first partition is assigned and calls the close when its last partition
// is given up (a rebalance ends them together); the close must return
// only once every record handed to the writers was acknowledged or failed
// (kafka.Writer.Close does). That is how a member that loses a partition
// stops writing for it before the next owner restores it: see Run.
type Outputs func() (Writers, func() error)

// Output writers give up a batch after at most outputAttempts produce
// requests of outputWriteTimeout each (and kafka-go's backoff of at most
// 500ms between them), so that closing a generation's writers (each with at
// most one round in flight: a round's writes whose caller gave up are
// dropped, kafkax.EagerWriter) returns within the consumer group's
// rebalance timeout.
const (
	outputWriteTimeout = 4 * time.Second
	outputAttempts     = 2
)

// NewWriters returns the three writers of one partition's worker on brokers
// under names, and a function that closes them (flushing what is buffered).
// It is the Outputs of a running processor.
func NewWriters(brokers []string, names kafkax.Names) (Writers, func() error) {
	cfg := func(topic kafkax.Topic) kafkax.WriterConfig {
		return kafkax.WriterConfig{Brokers: brokers, Topic: names.Topic(topic),
			WriteTimeout: outputWriteTimeout, MaxAttempts: outputAttempts}
	}
	// Eager writers: a batch's changelog and outputs go out at once, with
	// no linger; a worker has one batch in flight at a time anyway.
	norm := kafkax.NewEagerWriter(cfg(kafkax.TopicNormalized))
	dlq := kafkax.NewEagerWriter(cfg(kafkax.TopicDLQ))
	cl := kafkax.NewEagerWriter(cfg(kafkax.TopicProcessorState))
	cl.Writer().Balancer = kafka.BalancerFunc(func(m kafka.Message, partitions ...int) int { return m.Partition })
	return Writers{Normalized: norm, DLQ: dlq, Changelog: cl}, func() error {
		// At the same time, so that the close takes as long as the
		// slowest writer's, not the three one after another: that is
		// what the bound below is for.
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for i, w := range []*kafkax.EagerWriter{norm, dlq, cl} {
			wg.Go(func() { errs[i] = w.Close() })
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}

// Processor consumes reviews.raw.v1 and runs a worker per assigned
// partition. Safe for concurrent use by the workers RunGroup starts.
type Processor struct {
	cfg      Config
	adapters *provider.Registry
	outputs  Outputs
	log      *zap.Logger
	m        *metrics
	now      func() time.Time

	// owners maps each partition to the worker that holds it, so that a
	// worker of an ended generation never clears the gauges of its
	// successor.
	mu     sync.Mutex
	owners map[int]*worker
	// gens are the writers of each generation this member holds
	// partitions in, shared by its workers (generationOutputs).
	gens map[int32]*generationOutputs
}

// generationOutputs are the writers one generation's workers share, with
// how many workers still use them.
type generationOutputs struct {
	w     Writers
	close func() error
	refs  int
}

// generationOutputs returns the writers of generation gen, made with
// p.outputs by its first worker. Sharing them, the workers' concurrent
// writes go out together (kafkax.EagerWriter gathers them): one produce
// request per partition for all of them, not one per worker.
func (p *Processor) generationOutputs(gen int32) Writers {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.gens[gen]
	if g == nil {
		w, closeW := p.outputs()
		g = &generationOutputs{w: w, close: closeW}
		p.gens[gen] = g
	}
	g.refs++
	return g.w
}

// releaseOutputs drops a worker's use of its generation's writers; the
// last worker of the generation closes them, which returns once every
// record handed to them was acknowledged or failed. kafka-go rejoins the
// group only after every worker of the generation returned, so the last
// one's close is done before the next owner of any of its partitions
// restores (Run).
func (p *Processor) releaseOutputs(gen int32, log *zap.Logger) {
	p.mu.Lock()
	g := p.gens[gen]
	if g == nil { // a worker made without generationOutputs (tests)
		p.mu.Unlock()
		return
	}
	g.refs--
	last := g.refs == 0
	if last {
		delete(p.gens, gen)
	}
	p.mu.Unlock()
	if !last {
		return
	}
	if err := g.close(); err != nil {
		log.Warn("closing the generation's writers", zap.Error(err))
	}
}

// New returns a processor whose partition workers write through the
// writers outputs makes. reg receives its metrics.
func New(cfg Config, adapters *provider.Registry, outputs Outputs, log *zap.Logger, reg prometheus.Registerer) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if outputs == nil {
		return nil, errors.New("processor: no outputs")
	}
	p := &Processor{cfg: cfg, adapters: adapters, outputs: outputs, log: log, m: newMetrics(reg), now: time.Now,
		owners: map[int]*worker{}, gens: map[int32]*generationOutputs{}}
	for _, name := range append(adapters.Names(), providerUnknown) {
		p.m.in.WithLabelValues(name)
		for _, d := range decisionLabels() {
			p.m.decisions.WithLabelValues(name, d)
		}
	}
	return p, nil
}

// Run joins the consumer group and processes until ctx ends; it returns nil
// then, or an error when the topics are missing or not co-partitioned. It
// blocks.
//
// The workers of one generation share writers (generationOutputs), and
// the last of them closes them when a rebalance ends the generation, before
// RunGroup lets the member rejoin, and a new generation (so the
// next owner's restore) cannot start before every member rejoined or the
// rebalance timeout passed: the records of the old owner's last batch are
// in the changelog before the next owner reads it, or were never written.
// The output writers' bounds keep that close within the rebalance timeout.
func (p *Processor) Run(ctx context.Context) error {
	if err := p.checkTopics(ctx); err != nil {
		return err
	}
	return kafkax.RunGroup(ctx, kafkax.GroupConfig{
		Brokers:  p.cfg.Brokers,
		GroupID:  p.cfg.Names.Group(kafkax.GroupProcessor),
		Topic:    p.cfg.Names.Topic(kafkax.TopicRaw),
		MaxBatch: p.cfg.MaxBatch,
		Linger:   p.cfg.Linger,
		Metrics:  p.m.group,
		Log:      p.log,
	}, p.open)
}

// checkTopics makes sure the changelog has a partition for every input
// partition: the state of input partition n lives on changelog partition n.
func (p *Processor) checkTopics(ctx context.Context) error {
	raw, state := p.cfg.Names.Topic(kafkax.TopicRaw), p.cfg.Names.Topic(kafkax.TopicProcessorState)
	c, done := kafkax.NewAdminClient(p.cfg.Brokers, 10*time.Second)
	defer done()
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{raw, state}})
	if err != nil {
		return fmt.Errorf("kafka metadata: %w", err)
	}
	parts := map[string]int{}
	for _, t := range md.Topics {
		if t.Error != nil {
			return fmt.Errorf("topic %s: %w (run `reviewctl setup`)", t.Name, t.Error)
		}
		parts[t.Name] = len(t.Partitions)
	}
	if parts[state] < parts[raw] {
		return fmt.Errorf("topic %s has %d partitions but %s has %d: the changelog needs one per input partition",
			state, parts[state], raw, parts[raw])
	}
	return nil
}

// open is the RunGroup OpenFunc: it restores the partition's state from the
// changelog, up to the changelog's end offset at assignment, before any
// record of the partition is handled, and starts at the committed offset.
func (p *Processor) open(ctx context.Context, a kafkax.Assignment) (kafkax.Worker, int64, error) {
	start := time.Now()
	store := dedupe.NewMemStore(0)
	n, err := p.restore(ctx, a.Partition, store)
	if err != nil {
		return nil, 0, fmt.Errorf("restore state of partition %d: %w", a.Partition, err)
	}
	took := time.Since(start)
	p.m.restore.Observe(took.Seconds())
	p.log.Info("partition state restored", zap.Int("partition", a.Partition), zap.Int("changelog_records", n),
		zap.Int("keys", store.Len()), zap.Duration("took", took), zap.Int64("start_offset", a.Committed))
	out := p.generationOutputs(a.Generation)
	w := &worker{
		p:          p,
		partition:  a.Partition,
		generation: a.Generation,
		out:        out,
		store:      store,
		overlay:    dedupe.NewOverlay(store),
		confirmed:  a.Committed,
		log:        p.log.With(zap.Int("partition", a.Partition)),
	}
	p.mu.Lock()
	p.owners[a.Partition] = w
	p.mu.Unlock()
	w.gauge()
	return w, a.Committed, nil
}

// worker handles one partition's batches; RunGroup calls it from one
// goroutine.
type worker struct {
	p         *Processor
	partition int
	// generation is the group generation the worker holds its partition
	// in; out are the writers its generation's workers share.
	generation int32
	out        Writers
	store      dedupe.Store
	overlay    *dedupe.Overlay
	// confirmed is the input offset below which every output is known to
	// be written: the committed offset at assignment, then the offset
	// after the last handled batch.
	confirmed int64
	log       *zap.Logger
}

// Handle implements kafkax.Worker: it decides the whole batch, writes the
// changelog, then the outputs and dead letters, and returns nil only when
// Kafka acknowledged all of them. On an error nothing of the batch counts
// as done; the same batch comes again.
func (w *worker) Handle(ctx context.Context, batch []kafka.Message) error {
	start := time.Now()
	now := w.p.now()
	ctx, cancel := context.WithTimeout(ctx, w.p.cfg.WriteTimeout)
	defer cancel()

	var recs []record
	_ = w.p.m.observe(stepNormalize, func() error { recs = w.p.normalize(batch, now); return nil })
	w.overlay.Discard()
	_ = w.p.m.observe(stepDedupe, func() error { w.decide(recs); return nil })

	if err := w.p.m.observe(stepChangelog, func() error { return w.writeChangelog(ctx) }); err != nil {
		w.overlay.Discard()
		return fmt.Errorf("write state changelog: %w", err)
	}
	// The store now mirrors what the changelog acknowledged; a retry of
	// this batch resends what it set (dedupe.Resend).
	w.overlay.Commit()

	if err := w.p.m.observe(stepOutput, func() error { return w.writeOutputs(ctx, recs) }); err != nil {
		return fmt.Errorf("write normalized records: %w", err)
	}
	if err := w.p.m.observe(stepDeadLetter, func() error { return w.writeDeadLetters(ctx, recs, now) }); err != nil {
		return fmt.Errorf("write dead letters: %w", err)
	}
	w.confirmed = batch[len(batch)-1].Offset + 1
	w.count(recs, start)
	return nil
}

// count records the metrics of a handled batch.
func (w *worker) count(recs []record, start time.Time) {
	m := w.p.m
	acked := time.Now()
	for i := range recs {
		r := &recs[i]
		m.in.WithLabelValues(r.provider).Inc()
		switch {
		case r.failed():
			m.deadLetters.WithLabelValues(r.provider, r.reason).Inc()
			w.log.Info("record dead-lettered", zap.Int64("offset", r.msg.Offset), zap.ByteString("key", r.msg.Key),
				zap.String("event_id", r.raw.EventID), zap.String("provider", r.raw.Provider),
				zap.String("reason", r.reason), zap.Error(r.err))
		default:
			m.decisions.WithLabelValues(r.provider, r.decision.String()).Inc()
			if r.decision.Emit() {
				m.out.WithLabelValues(r.provider, string(r.event.Op)).Inc()
				if !r.acceptedAt.IsZero() {
					m.latency.WithLabelValues(r.provider).Observe(acked.Sub(r.acceptedAt).Seconds())
				}
			}
		}
	}
	m.batch.Observe(time.Since(start).Seconds())
	w.gauge()
}

// gauge sets the state size gauge of the worker's partition, if the worker
// still holds it.
func (w *worker) gauge() {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if w.p.owners[w.partition] == w {
		w.p.m.stateKeys.WithLabelValues(strconv.Itoa(w.partition)).Set(float64(w.store.Len()))
	}
}

// Close implements kafkax.Worker: the partition was revoked; its writers
// are closed, which returns once each record handed to them was
// acknowledged or failed, and its state is dropped (the next owner
// restores it from the changelog).
func (w *worker) Close() {
	w.p.releaseOutputs(w.generation, w.log)
	w.p.mu.Lock()
	if w.p.owners[w.partition] == w {
		delete(w.p.owners, w.partition)
		w.p.m.forget(w.partition)
	}
	w.p.mu.Unlock()
	w.store, w.overlay = nil, nil
}

// The steps, as metric labels.
const (
	stepNormalize  = "normalize"
	stepDedupe     = "dedupe"
	stepChangelog  = "changelog"
	stepOutput     = "output"
	stepDeadLetter = "deadletter"
)
