package processor

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// writeChangelog writes the batch's staged state, one record per changed
// key with its latest entry, to the changelog partition of the input
// partition's number. Nothing is written when no key changed.
func (w *worker) writeChangelog(ctx context.Context) error {
	staged := w.overlay.Staged()
	if len(staged) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(staged))
	for i, c := range staged {
		v, err := jsonx.Marshal(c.Entry)
		if err != nil {
			return fmt.Errorf("encode state of %s: %w", c.Key, err)
		}
		msgs[i] = kafka.Message{Partition: w.partition, Key: []byte(c.Key), Value: v}
	}
	return w.out.Changelog.WriteMessages(ctx, msgs...)
}

// restore reads the changelog partition of the given number from its first
// offset to its end offset as of now into s and returns how many records it
// read. A record with a null value forgets its key; one that does not
// decode is skipped (its key then counts as unseen, which can only cause a
// duplicate output, never a lost one).
func (p *Processor) restore(ctx context.Context, partition int, s dedupe.Store) (int, error) {
	topic := p.cfg.Names.Topic(kafkax.TopicProcessorState)
	first, end, err := p.bounds(ctx, topic, partition)
	if err != nil {
		return 0, err
	}
	if end <= first {
		return 0, nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   p.cfg.Brokers,
		Topic:     topic,
		Partition: partition,
		MinBytes:  1,
		MaxBytes:  2 * kafkax.FetchBytes,
		MaxWait:   100 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return 0, fmt.Errorf("seek %s/%d to %d: %w", topic, partition, first, err)
	}
	n := 0
	for {
		// A fetch that finds nothing for this long means the records up to
		// end are gone (say, a null-value tombstone at the tail removed by
		// compaction): fail loudly rather than run on a partial state, which
		// could let an older version through after a newer one. RunGroup
		// retries the open with backoff.
		fctx, cancel := context.WithTimeout(ctx, p.cfg.RestoreStall)
		m, err := r.FetchMessage(fctx)
		cancel()
		if err != nil {
			return n, fmt.Errorf("read %s/%d after %d records, %d to go to end offset %d: %w",
				topic, partition, n, end-r.Offset(), end, err)
		}
		n++
		p.m.restored.Inc()
		if m.Value == nil {
			s.Delete(string(m.Key))
		} else {
			var e dedupe.Entry
			if err := jsonx.Unmarshal(m.Value, &e); err != nil {
				p.m.badState.Inc()
				p.log.Warn("skipping undecodable state record", zap.Int("partition", partition),
					zap.Int64("offset", m.Offset), zap.ByteString("key", m.Key), zap.Error(err))
			} else {
				s.Put(string(m.Key), e)
			}
		}
		// Compaction leaves gaps in offsets; the end offset is one past
		// the last record, which compaction never removes.
		if m.Offset >= end-1 {
			return n, nil
		}
	}
}

// bounds returns the first and end (one past the last) offsets of a
// partition.
func (p *Processor) bounds(ctx context.Context, topic string, partition int) (first, end int64, err error) {
	s, err := kafkax.PartitionOffsets(ctx, p.cfg.Brokers, topic, partition)
	if err != nil {
		return 0, 0, err
	}
	return s.First, s.End, nil
}
