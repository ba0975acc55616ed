package processor

import (
	"context"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
)

// deadLetter builds the dead letter of a failed input record: the original
// bytes untouched, the stage, reason and error, where it was read (topic,
// partition, offset) and its headers.
func deadLetter(r *record, now time.Time) envelope.DeadLetter {
	return envelope.DeadLetterOf(envelope.StageProcessor, r.reason, r.err, r.msg, r.raw.Provider, now)
}

// writeDeadLetters writes the batch's failed records to reviews.dlq.v1.
func (w *worker) writeDeadLetters(ctx context.Context, recs []record, now time.Time) error {
	var dls []envelope.DeadLetter
	for i := range recs {
		if r := &recs[i]; r.failed() {
			dls = append(dls, deadLetter(r, now))
		}
	}
	if len(dls) == 0 {
		return nil
	}
	return envelope.WriteDeadLetters(ctx, w.out.DLQ, dls...)
}
