package app

import (
	"context"
	"errors"
	"sync"

	"github.com/segmentio/kafka-go"
)

// errPendingFull is returned by pendingBytes.write when the records would
// take the bytes waiting on Kafka past RECEIVER_MAX_PENDING_BYTES.
var errPendingFull = errors.New("too many bytes are waiting on Kafka")

// pendingBytes bounds the bytes of records handed to kafka-go that it is
// not done with yet. kafka-go keeps the records of a write whose caller
// gave up (its context ended) queued until it has sent or failed them,
// which, while a broker hangs, takes its WriteTimeout times MaxAttempts;
// without a bound, deliveries retried by providers meanwhile would pile up
// in memory. Safe for concurrent use.
type pendingBytes struct {
	max int64

	mu     sync.Mutex
	used   int64
	writes int // writes holding bytes
}

// take reserves n bytes. It succeeds when they fit under max, or when no
// other write holds any: records larger than the whole budget are still
// written one at a time rather than refused forever.
func (p *pendingBytes) take(n int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.writes > 0 && p.used+n > p.max {
		return false
	}
	p.used += n
	p.writes++
	return true
}

// give releases n bytes reserved by take.
func (p *pendingBytes) give(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used -= n
	p.writes--
}

// bytes is how many bytes are reserved now.
func (p *pendingBytes) bytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}

// write hands msgs to w, counting their bytes (recordBytes) until w is done
// with them, and waits for w's outcome until ctx ends. It returns
// errPendingFull at once, writing nothing, when the bytes do not fit; else
// w's error, or ctx's when ctx ended first.
//
// The count is exact because the write itself never gives up: it runs
// with a context that never ends, so WriteMessages returns only once
// kafka-go has written or failed every batch holding the records (a
// synchronous kafka.Writer waits for each, and kafka-go bounds each by its
// own WriteTimeout, MaxAttempts and dial timeout), or at once when it
// fails before queueing anything (a closed writer, a record too large, no
// metadata). Only then are the bytes given back. The caller stops waiting
// at ctx's end; the write goes on without it.
func (p *pendingBytes) write(ctx context.Context, w Writer, msgs []kafka.Message) error {
	n := recordBytes(msgs)
	if !p.take(n) {
		return errPendingFull
	}
	done := make(chan error, 1)
	go func() {
		err := w.WriteMessages(context.Background(), msgs...)
		p.give(n)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recordBytes is what msgs cost the budget: their keys, values, and
// headers' keys and values.
func recordBytes(msgs []kafka.Message) int64 {
	var n int64
	for _, m := range msgs {
		n += int64(len(m.Key) + len(m.Value))
		for _, h := range m.Headers {
			n += int64(len(h.Key) + len(h.Value))
		}
	}
	return n
}
