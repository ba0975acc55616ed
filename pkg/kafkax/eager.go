package kafkax

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// EagerWriter sends a write at once when none of its own is in flight, and
// gathers the writes that come while one is into the next request: a
// record on a quiet path waits for no timer, and under load requests grow
// with the load (group commit). From writerBusyRate records per second on
// (pace.go) a round also waits up to busyLinger from its first write, so
// that at the maximum requests are as large as a linger makes them, but
// goes out once lingerGap passed without a new write; below a quarter of
// that rate, or after half a second with no write, it sends at once again.
// It wraps a kafka.Writer whose BatchTimeout is near zero (NewEagerWriter),
// so that one call to it is one produce request per partition.
//
// A write whose caller gave up (its context ended) before its round began
// is dropped, never sent: unlike kafka-go's own queue, nothing a caller
// abandoned waits in memory for a broker that hangs. Once its round began
// it is kafka-go's, and Close waits for it.
//
// WriteMessages blocks until its records are acknowledged (acks=all), fail,
// or ctx ends. Safe for concurrent use.
type EagerWriter struct {
	w *kafka.Writer

	mu      sync.Mutex
	queue   []*eagerWrite
	running bool
	closed  bool
	idle    *sync.Cond // signalled when running turns false
	pace    *pace      // of the records written; busy, a round lingers
	last    time.Time  // the latest write queued
	stats   EagerStats
}

// EagerStats counts an EagerWriter's work since it was made.
type EagerStats struct {
	// Writes is how many WriteMessages calls were queued.
	Writes uint64
	// Rounds is how many requests (kafka.Writer calls) sent them.
	Rounds uint64
	// Dropped is how many writes were never sent because their caller had
	// given up before their round began.
	Dropped uint64
	// Lingered is how many rounds waited for more writes (busy pace).
	Lingered uint64
}

// Stats returns the counts so far.
func (e *EagerWriter) Stats() EagerStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats
}

type eagerWrite struct {
	at   time.Time // queued
	ctx  context.Context
	msgs []kafka.Message
	done chan error // buffered: the round never blocks on a caller
}

// ErrWriterClosed is returned by WriteMessages after Close.
var ErrWriterClosed = errors.New("kafka writer closed")

// NewEagerWriter returns an EagerWriter over NewWriter(cfg), with the
// kafka.Writer's own BatchTimeout taken down to a microsecond: the
// EagerWriter does the batching.
func NewEagerWriter(cfg WriterConfig) *EagerWriter {
	w := NewWriter(cfg)
	w.BatchTimeout = eagerBatchTimeout
	return WrapEager(w)
}

// eagerBatchTimeout is the kafka.Writer's linger under an EagerWriter.
// kafka-go adds a call's records to a partition's batch under one lock, so
// its timer, however short, cannot cut a call's batch in two.
const eagerBatchTimeout = 1000 // nanoseconds

// WrapEager returns an EagerWriter over w, which it owns and closes. w's
// BatchTimeout should be near zero.
func WrapEager(w *kafka.Writer) *EagerWriter {
	e := &EagerWriter{w: w, pace: newWriterPace(time.Now())}
	e.idle = sync.NewCond(&e.mu)
	return e
}

// Writer is the kafka.Writer underneath, for its settings (Balancer, Topic).
func (e *EagerWriter) Writer() *kafka.Writer { return e.w }

// WriteMessages writes msgs. See EagerWriter.
func (e *EagerWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	now := time.Now()
	ew := &eagerWrite{at: now, ctx: ctx, msgs: msgs, done: make(chan error, 1)}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrWriterClosed
	}
	e.pace.arrived(now)
	e.pace.count(len(msgs), now)
	e.queue = append(e.queue, ew)
	e.last = now
	e.stats.Writes++
	if !e.running {
		e.running = true
		go e.run()
	}
	e.mu.Unlock()
	select {
	case err := <-ew.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run sends rounds until the queue is empty. While the pace is busy, a
// round waits as lingerWait says (busyLinger from its first write, cut
// short by lingerGap without a write), unless that has passed already (the
// previous round took longer).
func (e *EagerWriter) run() {
	lingered := false
	for {
		e.mu.Lock()
		if len(e.queue) == 0 {
			e.running = false
			e.idle.Broadcast()
			e.mu.Unlock()
			return
		}
		if wait := e.lingerWait(time.Now()); wait > 0 && !e.closed {
			if !lingered {
				e.stats.Lingered++
			}
			e.mu.Unlock()
			time.Sleep(wait)
			lingered = true
			continue
		}
		round := e.queue
		e.queue = nil
		e.mu.Unlock()
		lingered = false
		e.send(round)
	}
}

// lingerGap ends a busy round's linger early: a round that got no new
// write for this long goes out. While a round lingers none is in flight,
// so once callers that wait for their write before writing again (the
// receiver's providers, the processor's partition workers) have all
// written, the writes stop, and waiting on only adds to every answer: in
// make bench's maximum phase (64 senders, each waiting for its answer) the
// receiver's full 5 ms linger capped rows/s at about 64 / (2 x 5 ms) and
// left a fifth of a core idle. A stream of 1,000 writes a second or more,
// the busy rate, rarely has such a gap, so its rounds keep the linger's
// size (and Kafka's CPU per record).
const lingerGap = time.Millisecond

// lingerWait is how long the queued round still waits at now (0: send it):
// until busy linger from its first write, but no longer than lingerGap
// after the latest write. Called with mu held and the queue not empty.
func (e *EagerWriter) lingerWait(now time.Time) time.Duration {
	linger := e.pace.linger()
	if linger <= 0 {
		return 0
	}
	untilEnd := e.queue[0].at.Add(linger).Sub(now)
	untilGap := e.last.Add(lingerGap).Sub(now)
	if untilEnd <= 0 || untilGap <= 0 {
		return 0
	}
	return min(untilEnd, untilGap)
}

// send writes the live writes of one round in one call and answers each.
func (e *EagerWriter) send(round []*eagerWrite) {
	live := round[:0]
	var msgs []kafka.Message
	dropped := 0
	for _, ew := range round {
		if err := ew.ctx.Err(); err != nil {
			ew.done <- err
			dropped++
			continue
		}
		live = append(live, ew)
		msgs = append(msgs, ew.msgs...)
	}
	e.mu.Lock()
	e.stats.Dropped += uint64(dropped)
	if len(live) > 0 {
		e.stats.Rounds++
	}
	e.mu.Unlock()
	if len(live) == 0 {
		return
	}
	// The round's own deadline is kafka-go's (WriteTimeout, MaxAttempts):
	// its callers may each give up earlier, but the records are sent.
	err := e.w.WriteMessages(context.Background(), msgs...)
	var tooLarge kafka.MessageTooLargeError
	if errors.As(err, &tooLarge) && len(live) > 1 {
		// kafka-go sent nothing: one caller's record is over BatchBytes.
		// Each write goes alone, so only that caller gets the error.
		for _, ew := range live {
			ew.done <- e.w.WriteMessages(context.Background(), ew.msgs...)
		}
		return
	}
	var werrs kafka.WriteErrors
	perRecord := errors.As(err, &werrs) && len(werrs) == len(msgs)
	at := 0
	for _, ew := range live {
		n := len(ew.msgs)
		switch {
		case err == nil:
			ew.done <- nil
		case perRecord:
			ew.done <- ownErrors(werrs[at : at+n])
		default:
			ew.done <- err
		}
		at += n
	}
}

// ownErrors is nil when every record of a write succeeded, and otherwise
// the write's own kafka.WriteErrors.
func ownErrors(errs kafka.WriteErrors) error {
	for _, err := range errs {
		if err != nil {
			return append(kafka.WriteErrors(nil), errs...)
		}
	}
	return nil
}

// Close waits for the round in flight and those queued, then closes the
// kafka.Writer (which flushes what it holds). Writes after Close fail with
// ErrWriterClosed.
func (e *EagerWriter) Close() error {
	e.mu.Lock()
	e.closed = true
	for e.running {
		e.idle.Wait()
	}
	e.mu.Unlock()
	return e.w.Close()
}
