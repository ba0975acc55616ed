package kafkax

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
)

// Worker processes the records of one partition for as long as this member
// holds it. Its methods are called from one goroutine.
type Worker interface {
	// Handle makes the batch's effects durable. It returns nil only when
	// they are; an error makes the runner back off and hand the same batch
	// again, so no record is skipped. Handle deals with permanent record
	// errors itself (dead-lettering them) and returns nil for them.
	Handle(ctx context.Context, batch []kafka.Message) error
	// Close is called when the partition is revoked or the runner stops.
	Close()
}

// Assignment describes a partition handed to this member.
type Assignment struct {
	Topic     string
	Partition int
	// Committed is the group's committed offset, or kafka.FirstOffset when
	// the group has none.
	Committed int64
	// Generation is the group generation this member holds the partition
	// in; every partition of one generation is given up together.
	Generation int32
}

// OpenFunc prepares a worker for a newly assigned partition, before any of
// its records is fetched (this is where keyed state is restored), and
// returns the offset to start from. An error ends this generation's hold on
// the partition; the runner retries with backoff.
type OpenFunc func(ctx context.Context, a Assignment) (w Worker, start int64, err error)

// GroupConfig configures RunGroup.
type GroupConfig struct {
	Brokers []string
	GroupID string
	Topic   string
	// MaxBatch bounds the records of one Handle call (default 500).
	MaxBatch int
	// Linger, when above 0, is how long a batch waits for one more record
	// once it has taken what the reader holds, whatever the partition's
	// pace (default 0). A quiet partition's batch is what the reader holds,
	// with no wait; a busy one's lingers 5 ms per record up to MaxWait
	// (consume, pace.go). A linger adds latency to every quiet record.
	Linger time.Duration
	// BusyLinger is a busy partition's linger (default 5ms): longer, fewer
	// and larger batches at the maximum, for a Worker whose cost is mostly
	// per batch (the sink's transaction); it never delays a quiet record.
	BusyLinger time.Duration
	// MaxWait bounds how long a batch lingers from its first record
	// (default 100ms): linger restarts with every record, so without it a
	// steady trickle could hold a batch for MaxBatch x Linger.
	MaxWait time.Duration
	// CommitInterval is how often a partition's progress is committed to
	// the group (default 1s): at most one OffsetCommit per partition per
	// interval instead of one per batch, and the last progress is committed
	// once the partition goes idle for an interval or is given up. A crash
	// redelivers at most an interval of records, which every consumer here
	// absorbs (keyed state, version guards, offsets kept in PostgreSQL).
	CommitInterval time.Duration
	// Metrics, when set, receives the group's consumer metrics: each held
	// partition's lag (LagMetric) after every batch, its series dropped
	// when the partition is given up.
	Metrics *GroupMetrics
	// Dialer, when set, is how partition readers connect to the brokers
	// (kafka-go's default dialer otherwise); the group's own coordinator
	// connections do not use it.
	Dialer *kafka.Dialer
	Log    *zap.Logger
}

// RebalanceTimeout is how long the group coordinator waits for every member
// to rejoin after a rebalance starts. A member rejoins only once each of its
// partition functions returned (Worker.Close included), so work that a
// Worker's Close finishes within it is done before another member opens
// the partition.
const RebalanceTimeout = 10 * time.Second

// RunGroup joins the consumer group and, for each generation, runs one
// goroutine per assigned partition: Open, then fetch, Handle, commit. Offsets
// are committed to Kafka only after Handle returns nil. It blocks until ctx
// ends and returns nil then, or a setup error.
func RunGroup(ctx context.Context, cfg GroupConfig, open OpenFunc) error {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 500
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 100 * time.Millisecond
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = time.Second
	}
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    cfg.GroupID,
		Brokers:               cfg.Brokers,
		Topics:                []string{cfg.Topic},
		StartOffset:           kafka.FirstOffset,
		HeartbeatInterval:     time.Second,
		SessionTimeout:        10 * time.Second,
		RebalanceTimeout:      RebalanceTimeout,
		JoinGroupBackoff:      500 * time.Millisecond,
		WatchPartitionChanges: true,
		ErrorLogger:           kafka.LoggerFunc(func(msg string, args ...any) { log.Debug(fmt.Sprintf(msg, args...)) }),
	})
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", cfg.GroupID, err)
	}
	defer group.Close()
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("consumer group: join failed, retrying", zap.String("group", cfg.GroupID), zap.Error(err))
			if !sleep(ctx, time.Second) {
				return nil
			}
			continue
		}
		var commitMu sync.Mutex
		commit := func(partition int, next int64) error {
			commitMu.Lock()
			defer commitMu.Unlock()
			return gen.CommitOffsets(map[string]map[int]int64{cfg.Topic: {partition: next}})
		}
		parts := gen.Assignments[cfg.Topic]
		ids := make([]int, len(parts))
		for i, p := range parts {
			ids[i] = p.ID
		}
		log.Info("consumer group: partitions assigned", zap.String("group", cfg.GroupID),
			zap.Int32("generation", gen.ID), zap.Ints("partitions", ids))
		for _, p := range parts {
			a := Assignment{Topic: cfg.Topic, Partition: p.ID, Committed: p.Offset, Generation: gen.ID}
			gen.Start(func(gctx context.Context) {
				runPartition(gctx, cfg, log, a, open, commit)
			})
		}
	}
}

func runPartition(ctx context.Context, cfg GroupConfig, log *zap.Logger, a Assignment, open OpenFunc,
	commit func(int, int64) error) {
	// kafka-go still runs a function started on a generation that has
	// already ended, untracked, with a done context; the next generation
	// owns the partition then, so this one must not open (restore state)
	// or touch it.
	if ctx.Err() != nil {
		return
	}
	log = log.With(zap.String("topic", a.Topic), zap.Int("partition", a.Partition))
	defer cfg.Metrics.forget(a.Topic, a.Partition)
	var (
		w    Worker
		next int64
		err  error
	)
	for attempt := 0; ; attempt++ {
		w, next, err = open(ctx, a)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("open partition failed, retrying", zap.Error(err))
		if !sleep(ctx, Backoff(attempt, 100*time.Millisecond, 5*time.Second)) {
			return
		}
	}
	// Close runs after the last commit attempt and before this function
	// returns: kafka-go lets the member rejoin the group, and so the next
	// owner restore the partition, only once every function of the
	// generation has returned (Worker.Close).
	defer w.Close()
	c := committer{commit: commit, partition: a.Partition, log: log, interval: cfg.CommitInterval}
	defer c.flush(true)
	// A reader that fails (a broker connection cut, an offset it cannot
	// set) is opened again at the next unhandled record, with backoff,
	// for as long as this member holds the partition: the partition is
	// never left assigned and unread until the next rebalance.
	for attempt := 0; ; attempt++ {
		progressed, err := consume(ctx, cfg, log, a, w, &c, &next)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			attempt = 0
		}
		wait := Backoff(attempt, 100*time.Millisecond, 5*time.Second)
		log.Warn("partition reader failed, opening it again", zap.Int64("offset", next),
			zap.Duration("in", wait), zap.Error(err))
		if !sleep(ctx, wait) {
			return
		}
	}
}

// consume reads the partition from *next, hands batches to w and records
// progress in *next and c, until ctx ends or the reader fails. It reports
// whether any batch was handled.
//
// It reads in one of two modes (pace) and switches with the partition's
// rate. Quiet, the broker answers a fetch as soon as it has a record and a
// batch is what the reader holds, with no wait: each record goes on at
// once. Busy, fetches wait for 16 KiB or 40 ms and a batch lingers for more
// records, up to MaxWait: far fewer fetch requests and batches, whose fixed
// costs (a produce round trip, a PostgreSQL transaction) are shared by many
// records, which is what holds the maximum throughput on a small machine.
func consume(ctx context.Context, cfg GroupConfig, log *zap.Logger, a Assignment, w Worker, c *committer,
	next *int64) (progressed bool, err error) {
	p := newPace(cfg, time.Now())
	readerBusy := p.busy
	r, err := openReader(cfg, a, readerBusy, *next)
	if err != nil {
		return false, err
	}
	defer func() { r.Close() }()
	batch := make([]kafka.Message, 0, cfg.MaxBatch)
	for {
		batch = batch[:0]
		m, err := c.fetchFirst(ctx, r)
		if err != nil {
			return progressed, fmt.Errorf("fetch at offset %d: %w", *next, err)
		}
		p.arrived(time.Now())
		batch = append(batch, m)
		batch = takeQueued(ctx, r, batch, cfg.MaxBatch)
		if linger := p.linger(); linger > 0 {
			batch = lingerFor(ctx, r, batch, cfg.MaxBatch, linger, cfg.MaxWait)
		}
		if !handle(ctx, log, w, batch) {
			return progressed, ctx.Err()
		}
		last := batch[len(batch)-1]
		*next = last.Offset + 1
		progressed = true
		c.done(*next)
		cfg.Metrics.setLag(a.Topic, a.Partition, max(0, last.HighWaterMark-last.Offset-1))
		if p.count(len(batch), time.Now()); p.busy != readerBusy {
			// The pace changed: the reader fetches the new way from the
			// next record on.
			r.Close()
			readerBusy = p.busy
			if r, err = openReader(cfg, a, readerBusy, *next); err != nil {
				return progressed, err
			}
		}
	}
}

// openReader returns a reader of a's partition from offset next, fetching
// as pace's mode says.
func openReader(cfg GroupConfig, a Assignment, busy bool, next int64) (*kafka.Reader, error) {
	rc := kafka.ReaderConfig{
		Brokers:   cfg.Brokers,
		Topic:     a.Topic,
		Partition: a.Partition,
		Dialer:    cfg.Dialer,
		MaxBytes:  FetchBytes,
		// The reader fetches ahead into this queue while a batch is
		// handled; the next batch takes what piled up (up to MaxBatch).
		QueueCapacity: cfg.MaxBatch,
		// Read-committed is irrelevant (no transactions); keep defaults.
	}
	if busy {
		rc.MinBytes, rc.MaxWait = 16<<10, 40*time.Millisecond
	} else {
		// The broker answers as soon as it has a byte; MaxWait only
		// bounds an idle long poll.
		rc.MinBytes, rc.MaxWait = 1, 250*time.Millisecond
	}
	r := kafka.NewReader(rc)
	if err := r.SetOffset(next); err != nil {
		r.Close()
		return nil, fmt.Errorf("set offset %d: %w", next, err)
	}
	return r, nil
}

// lingerFor appends to batch the records that come within linger of each
// other, up to max records and maxWait in all. A record that ends a wait
// brings the rest of its fetch with it (takeQueued), so a wait, with its
// timer, is per fetch, not per record.
func lingerFor(ctx context.Context, r *kafka.Reader, batch []kafka.Message, max int, linger, maxWait time.Duration) []kafka.Message {
	closeAt := time.Now().Add(maxWait)
	for len(batch) < max {
		wait := min(linger, time.Until(closeAt))
		if wait <= 0 {
			break
		}
		lctx, cancel := context.WithTimeout(ctx, wait)
		m, err := r.FetchMessage(lctx)
		cancel()
		if err != nil {
			break
		}
		batch = takeQueued(ctx, r, append(batch, m), max)
	}
	return batch
}

// queuedWait bounds takeQueued in all. Queued records come at once (a
// thousand in well under a millisecond); the deadline only guards against
// an entry FetchMessage skips (a reader restarted since).
const queuedWait = 5 * time.Millisecond

// takeQueued appends to batch, up to max records, what the reader has
// fetched already, without waiting for more: one deadline for them all,
// not a timer per record (which was 6% of the sink's CPU at the maximum).
func takeQueued(ctx context.Context, r *kafka.Reader, batch []kafka.Message, max int) []kafka.Message {
	n := r.Stats().QueueLength
	if n <= 0 || len(batch) >= max {
		return batch
	}
	qctx, cancel := context.WithTimeout(ctx, queuedWait)
	defer cancel()
	for ; n > 0 && len(batch) < max; n-- {
		m, err := r.FetchMessage(qctx)
		if err != nil {
			break
		}
		batch = append(batch, m)
	}
	return batch
}

// handle hands batch to w until it succeeds; it returns false when ctx
// ended first.
func handle(ctx context.Context, log *zap.Logger, w Worker, batch []kafka.Message) bool {
	for attempt := 0; ; attempt++ {
		err := w.Handle(ctx, batch)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn("batch failed, retrying the same batch", zap.Int("records", len(batch)),
			zap.Int64("first_offset", batch[0].Offset), zap.Int("attempt", attempt+1), zap.Error(err))
		if !sleep(ctx, Backoff(attempt, 100*time.Millisecond, 10*time.Second)) {
			return false
		}
	}
}

// committer commits one partition's progress at most once per interval.
type committer struct {
	commit    func(int, int64) error
	partition int
	log       *zap.Logger
	interval  time.Duration
	pending   int64 // next offset to commit; 0: nothing new
	last      time.Time
}

// done records that every record before next is durable, and commits when
// the interval since the last commit has passed.
func (c *committer) done(next int64) {
	c.pending = next
	if time.Since(c.last) >= c.interval {
		c.flush(false)
	}
}

// flush commits the pending progress, if any. The last flush, before the
// partition is given up, may fail because the generation has already
// ended; the next owner then re-reads at most an interval of records.
func (c *committer) flush(last bool) {
	if c.pending == 0 {
		return
	}
	c.last = time.Now()
	err := c.commit(c.partition, c.pending)
	switch {
	case err == nil || last || errors.Is(err, context.Canceled):
		// The work is durable either way; a lost commit means a
		// redelivery that the idempotent consumers absorb.
		if err != nil {
			c.log.Debug("last commit before giving the partition up failed", zap.Int64("offset", c.pending), zap.Error(err))
		}
		c.pending = 0
	default:
		// Kept pending: the next batch or the idle wait tries again in
		// an interval, so an idle partition's lag still reaches 0.
		c.log.Warn("commit offsets failed, retrying in an interval", zap.Int64("offset", c.pending), zap.Error(err))
	}
}

// fetchFirst waits for the first record of the next batch. While progress is
// pending it waits at most until the commit is due, commits, and waits on.
func (c *committer) fetchFirst(ctx context.Context, r *kafka.Reader) (kafka.Message, error) {
	for c.pending != 0 {
		wait := c.interval - time.Since(c.last)
		if wait <= 0 {
			c.flush(false)
			break
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		m, err := r.FetchMessage(wctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return m, err
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			return m, err
		}
		c.flush(false)
	}
	return r.FetchMessage(ctx)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
