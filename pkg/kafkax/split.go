package kafkax

import (
	"bytes"
	"context"
	"errors"

	"github.com/segmentio/kafka-go"
)

// MessageWriter is what WriteAll needs of a writer: a synchronous, acks=all
// WriteMessages (NewWriter).
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// WriteAll writes msgs with w and returns, in ascending order, the indexes of
// the records that Kafka refuses as too large even when each stands alone:
// one over the writer's BatchBytes (kafka-go refuses it before sending
// anything), or one the broker answers [10] Message Size Too Large. A batch
// the broker refuses as too large is split in halves, and each half written
// again, until the offender stands alone; records of the refused batches
// that fit are written, in their order. With err == nil every record not
// listed is acknowledged; the caller dead-letters the listed ones (reason
// too_large) instead of retrying them, which could never succeed.
//
// Any other error is returned as it is, and the caller retries the whole
// write: records of it may already be written, which the idempotent
// consumers absorb. A record written again after a refused batch can land
// after a later record of its key from another batch of the same call;
// every consumer keeps the highest version whatever the order.
func WriteAll(ctx context.Context, w MessageWriter, msgs []kafka.Message) (tooLarge []int, err error) {
	idx := make([]int, len(msgs))
	for i := range idx {
		idx[i] = i
	}
	err = writeSplit(ctx, w, msgs, idx, &tooLarge)
	return tooLarge, err
}

// writeSplit writes the records of msgs named by idx and adds the indexes
// of those refused alone as too large to out, in ascending order.
func writeSplit(ctx context.Context, w MessageWriter, msgs []kafka.Message, idx []int, out *[]int) error {
	if len(idx) == 0 {
		return nil
	}
	batch := make([]kafka.Message, len(idx))
	for i, j := range idx {
		batch[i] = msgs[j]
	}
	err := w.WriteMessages(ctx, batch...)
	if err == nil {
		return nil
	}
	var one kafka.MessageTooLargeError
	if errors.As(err, &one) {
		// kafka-go checked sizes first, in order, and sent nothing: the
		// first record equal to the one it names is over BatchBytes by
		// itself (an equal record before it would have been named).
		at := indexOf(batch, one.Message)
		if at < 0 {
			return err
		}
		if err := writeSplit(ctx, w, msgs, idx[:at], out); err != nil {
			return err
		}
		*out = append(*out, idx[at])
		return writeSplit(ctx, w, msgs, idx[at+1:], out)
	}
	var werrs kafka.WriteErrors
	if !errors.As(err, &werrs) || len(werrs) != len(idx) {
		return err
	}
	var failed []int
	for i, e := range werrs {
		switch {
		case e == nil:
		case errors.Is(e, kafka.MessageSizeTooLarge):
			failed = append(failed, idx[i])
		default:
			return err // a transient failure among them: retry the whole write
		}
	}
	if len(failed) == 1 && len(idx) == 1 {
		*out = append(*out, failed[0])
		return nil
	}
	if len(failed) == 1 {
		// Alone now: written by itself, it is either taken or the offender.
		return writeSplit(ctx, w, msgs, failed, out)
	}
	half := len(failed) / 2
	if err := writeSplit(ctx, w, msgs, failed[:half], out); err != nil {
		return err
	}
	return writeSplit(ctx, w, msgs, failed[half:], out)
}

func indexOf(batch []kafka.Message, m kafka.Message) int {
	for i := range batch {
		b := &batch[i]
		if bytes.Equal(b.Key, m.Key) && bytes.Equal(b.Value, m.Value) && len(b.Headers) == len(m.Headers) {
			return i
		}
	}
	return -1
}
