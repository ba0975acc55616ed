package processor

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
)

// deadLetterMessage builds the reviews.dlq.v1 record of a failed input
// record: the original bytes untouched, the stage, reason and error, where
// it was read (topic, partition, offset) and its headers.
func deadLetterMessage(r *record, now time.Time) (kafka.Message, error) {
	return envelope.DeadLetterOf(envelope.StageProcessor, r.reason, r.err, r.msg, r.raw.Provider, now).Message()
}

// writeDeadLetters writes the batch's failed records to reviews.dlq.v1.
func (w *worker) writeDeadLetters(ctx context.Context, recs []record, now time.Time) error {
	var msgs []kafka.Message
	for i := range recs {
		r := &recs[i]
		if !r.failed() {
			continue
		}
		m, err := deadLetterMessage(r, now)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		return nil
	}
	return w.p.w.DLQ.WriteMessages(ctx, msgs...)
}
