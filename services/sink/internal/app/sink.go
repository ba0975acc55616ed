// Package app is the sink: it consumes reviews.normalized.v1 in batches
// and writes each batch, with its consumed offset, in one PostgreSQL
// transaction (package store), behind a circuit breaker that pauses
// consumption while PostgreSQL is down.
package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
	"github.com/reviewpipe/reviewpipe/services/sink/internal/batch"
	"github.com/reviewpipe/reviewpipe/services/sink/internal/store"
)

// Config configures the sink.
type Config struct {
	Brokers []string
	Names   kafkax.Names
	// MaxBatch bounds the records of one transaction (default 1000).
	MaxBatch int
	// Linger, when above 0, is how long a batch waits for one more record
	// (default 0: a batch is what arrived while the last transaction ran;
	// see kafkax.GroupConfig).
	Linger time.Duration
	// BusyLinger is the linger of a busy partition (default 10ms): the
	// sink's cost is mostly per transaction, so at the maximum it gathers
	// more records per transaction than the 5 ms of other consumers.
	BusyLinger time.Duration
	// TxTimeout bounds one batch's transaction (default 30s).
	TxTimeout time.Duration
	// BreakerFailures is how many consecutive failed transactions, with
	// PostgreSQL unreachable, open the breaker (default 3).
	BreakerFailures int
	// BreakerOpen is how long the breaker stays open before it lets one
	// transaction probe PostgreSQL again (default 5s).
	BreakerOpen time.Duration
}

// DefaultBusyLinger is SINK_BUSY_LINGER's default: the sink's linger
// before it waited only when busy, which make bench's maximum needs (at 5 ms
// its batches were a fifth smaller and PostgreSQL's CPU per review higher).
const DefaultBusyLinger = 10 * time.Millisecond

// Validate fills defaults and checks the config.
func (c *Config) Validate() error {
	if c.MaxBatch == 0 {
		c.MaxBatch = 1000
	}
	if c.BusyLinger == 0 {
		c.BusyLinger = DefaultBusyLinger
	}
	if c.TxTimeout == 0 {
		c.TxTimeout = 30 * time.Second
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 3
	}
	if c.BreakerOpen == 0 {
		c.BreakerOpen = 5 * time.Second
	}
	switch {
	case len(c.Brokers) == 0:
		return errors.New("KAFKA_BROKERS names no broker")
	case c.MaxBatch < 1 || c.MaxBatch > 50_000:
		return fmt.Errorf("SINK_MAX_BATCH must be between 1 and 50000, got %d", c.MaxBatch)
	case c.Linger < 0 || c.Linger > time.Second:
		return fmt.Errorf("SINK_LINGER must be between 0 and 1s, got %s", c.Linger)
	case c.BusyLinger < 0 || c.BusyLinger > time.Second:
		return fmt.Errorf("SINK_BUSY_LINGER must be between 0 and 1s, got %s", c.BusyLinger)
	case c.BreakerFailures < 1:
		return fmt.Errorf("SINK_BREAKER_FAILURES must be at least 1, got %d", c.BreakerFailures)
	}
	return nil
}

// Writer is a synchronous acks=all Kafka writer (kafkax.NewWriter).
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Sink consumes reviews.normalized.v1 into PostgreSQL.
type Sink struct {
	cfg     Config
	store   *store.Store
	dlq     Writer
	log     *zap.Logger
	m       metrics
	breaker *gobreaker.CircuitBreaker[store.Result]
	now     func() time.Time
}

// New returns a sink writing into st and dead-lettering refused records to dlq.
func New(cfg Config, st *store.Store, dlq Writer, log *zap.Logger, reg prometheus.Registerer) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, store: st, dlq: dlq, log: log, m: newMetrics(reg), now: time.Now}
	s.breaker = gobreaker.NewCircuitBreaker[store.Result](gobreaker.Settings{
		Name:        "postgres",
		MaxRequests: 1,
		Timeout:     cfg.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(cfg.BreakerFailures) },
		// Only an unreachable PostgreSQL counts against the breaker; a
		// data error is the batch's problem, not the dependency's.
		IsSuccessful: func(err error) bool { return err == nil || !pgstore.IsUnavailable(err) },
		IsExcluded:   func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			s.m.breaker.Set(float64(to))
			log.Warn("postgres breaker changed state", zap.Stringer("from", from), zap.Stringer("to", to))
		},
	})
	return s, nil
}

// BreakerState is the PostgreSQL breaker's state ("closed", "half-open", "open").
func (s *Sink) BreakerState() string { return s.breaker.State().String() }

// Run consumes until ctx ends; it returns nil then, or a setup error.
func (s *Sink) Run(ctx context.Context) error {
	topic := s.cfg.Names.Topic(kafkax.TopicNormalized)
	group := s.cfg.Names.Group(kafkax.GroupSink)
	return kafkax.RunGroup(ctx, kafkax.GroupConfig{
		Brokers:    s.cfg.Brokers,
		GroupID:    group,
		Topic:      topic,
		MaxBatch:   s.cfg.MaxBatch,
		Linger:     s.cfg.Linger,
		BusyLinger: s.cfg.BusyLinger,
		Metrics:    s.m.group,
		Log:        s.log,
	}, s.open(group))
}

// open resumes each assigned partition from the offset stored in
// PostgreSQL with the rows it produced; Kafka's committed offset (or the
// first one) serves only when PostgreSQL has none.
func (s *Sink) open(group string) kafkax.OpenFunc {
	return func(ctx context.Context, a kafkax.Assignment) (kafkax.Worker, int64, error) {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.TxTimeout)
		defer cancel()
		next, ok, err := s.store.NextOffset(ctx, group, a.Topic, a.Partition)
		if err != nil {
			return nil, 0, err
		}
		start, from := a.Committed, "kafka"
		if ok {
			start, from = next, "postgres"
		}
		s.log.Info("partition assigned", zap.String("topic", a.Topic), zap.Int("partition", a.Partition),
			zap.Int64("start_offset", start), zap.String("offset_from", from), zap.Int64("kafka_committed", a.Committed))
		return &worker{s: s, consumer: group, topic: a.Topic, partition: a.Partition, dlqDone: -1}, start, nil
	}
}

type worker struct {
	s         *Sink
	consumer  string
	topic     string
	partition int
	// dlqDone is the offset below which refused records were already
	// dead-lettered, so a retried batch does not send them again.
	dlqDone int64
}

func (w *worker) Close() {}

// Handle writes the batch; see kafkax.Worker.
func (w *worker) Handle(ctx context.Context, msgs []kafka.Message) error {
	s := w.s
	now := s.now()
	s.m.batchSize.Observe(float64(len(msgs)))
	changes := make([]batch.Write, 0, len(msgs))
	byOffset := make(map[int64]kafka.Message, len(msgs))
	var dead []envelope.DeadLetter
	var reasons []string
	for _, m := range msgs {
		byOffset[m.Offset] = m
		c, err := batch.Decode(m, now)
		if err != nil {
			if m.Offset >= w.dlqDone {
				dl := w.deadLetter(m, batch.ReasonOf(err), err, now)
				dead, reasons = append(dead, dl), append(reasons, batch.ReasonOf(err))
			}
			continue
		}
		changes = append(changes, c)
	}
	if len(dead) > 0 {
		if err := w.writeDead(ctx, dead, reasons); err != nil {
			return err
		}
	}
	w.dlqDone = msgs[len(msgs)-1].Offset + 1
	pos := store.Position{Consumer: w.consumer, Topic: w.topic, Partition: w.partition,
		First: msgs[0].Offset, Next: msgs[len(msgs)-1].Offset + 1}
	return w.apply(ctx, pos, changes, byOffset)
}

// apply writes one range in one transaction. A data error that PostgreSQL
// refuses (one bad value fails the whole statement) is narrowed down by
// halving the range until the one record is found, dead-lettered and
// passed over; the other ranges commit in order.
func (w *worker) apply(ctx context.Context, pos store.Position, changes []batch.Write, byOffset map[int64]kafka.Message) error {
	s := w.s
	start := time.Now()
	res, err := s.breaker.Execute(func() (store.Result, error) {
		// The in-flight batch finishes on shutdown (within TxTimeout)
		// rather than being rolled back half-way.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.TxTimeout)
		defer cancel()
		return s.store.Apply(tctx, pos, changes)
	})
	if err != nil {
		s.m.txSeconds.WithLabelValues("error").Observe(time.Since(start).Seconds())
		if !isDataError(err) {
			return err
		}
		if len(changes) <= 1 {
			if len(changes) == 1 {
				m := byOffset[changes[0].Offset]
				s.log.Error("postgres refused a record; dead-lettering it", zap.Int64("offset", m.Offset), zap.Error(err))
				dl := w.deadLetter(m, "store_rejected", err, s.now())
				if err := w.writeDead(ctx, []envelope.DeadLetter{dl}, []string{"store_rejected"}); err != nil {
					return err
				}
			}
			return w.apply(ctx, pos, nil, byOffset)
		}
		mid := len(changes) / 2
		left, right := pos, pos
		left.Next, right.First = changes[mid].Offset, changes[mid].Offset
		if err := w.apply(ctx, left, changes[:mid], byOffset); err != nil {
			return err
		}
		return w.apply(ctx, right, changes[mid:], byOffset)
	}
	committed := time.Now()
	s.m.txSeconds.WithLabelValues("ok").Observe(committed.Sub(start).Seconds())
	s.m.rows.WithLabelValues(outcomeWritten).Add(float64(len(res.Written)))
	s.m.rows.WithLabelValues(outcomeStale).Add(float64(res.Stale))
	s.m.rows.WithLabelValues(outcomeSuperseded).Add(float64(res.Superseded))
	s.m.rows.WithLabelValues(outcomeReplayed).Add(float64(res.Replayed))
	s.m.movies.Add(float64(len(res.Movies)))
	for _, wr := range res.Written {
		if wr.AcceptedAt.IsZero() {
			continue
		}
		kind := "live"
		if wr.Repair {
			kind = "repair"
		}
		s.m.freshness.WithLabelValues(kind).Observe(committed.Sub(wr.AcceptedAt).Seconds())
	}
	if ce := s.log.Check(zap.DebugLevel, "batch committed"); ce != nil {
		ce.Write(zap.Int("partition", pos.Partition), zap.Int64("first_offset", pos.First), zap.Int64("next_offset", pos.Next),
			zap.Int("written", len(res.Written)), zap.Int("stale", res.Stale), zap.Int("replayed", res.Replayed))
	}
	return nil
}

func (w *worker) deadLetter(m kafka.Message, reason string, cause error, now time.Time) envelope.DeadLetter {
	dl := envelope.DeadLetterOf(envelope.StageSink, reason, cause, m, "", now)
	w.s.log.Warn("dead-lettering a normalized record", zap.String("reason", reason), zap.String("key", string(m.Key)),
		zap.Int64("offset", m.Offset), zap.String("event_id", dl.Headers[kafkax.HeaderEventID]), zap.Error(cause))
	return dl
}

func (w *worker) writeDead(ctx context.Context, dead []envelope.DeadLetter, reasons []string) error {
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := envelope.WriteDeadLetters(wctx, w.s.dlq, dead...); err != nil {
		return fmt.Errorf("write %d dead letters: %w", len(dead), err)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		w.s.m.deadLetters.WithLabelValues(r).Inc()
	}
	w.s.m.rows.WithLabelValues(outcomeDead).Add(float64(len(dead)))
	return nil
}

// isDataError reports whether PostgreSQL refused a value (class 22, data
// exception; class 23, integrity violation): retrying cannot help.
func isDataError(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (strings.HasPrefix(pg.Code, "22") || strings.HasPrefix(pg.Code, "23"))
}
