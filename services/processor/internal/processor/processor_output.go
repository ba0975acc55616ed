package processor

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// copiedHeaders are the raw record's headers that travel on to
// reviews.normalized.v1: the event id for tracing, the source, and the
// acceptance time that end-to-end freshness starts from.
var copiedHeaders = []string{kafkax.HeaderEventID, kafkax.HeaderSource, kafkax.HeaderAccepted}

// outputMessage builds the reviews.normalized.v1 record of an emitted
// change: key the canonical id, value {"op","review"}, headers copied from
// the raw record (accepted-at and event-id filled from the envelope when the
// raw record lacks them).
func outputMessage(r *record) (kafka.Message, error) {
	v, err := r.event.Marshal()
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode %s: %w", r.event.Review.ID, err)
	}
	m := kafka.Message{Key: []byte(r.event.Review.ID), Value: v}
	have := map[string]bool{}
	for _, h := range r.msg.Headers {
		for _, name := range copiedHeaders {
			if h.Key == name && !have[name] {
				m.Headers = append(m.Headers, kafka.Header{Key: name, Value: h.Value})
				have[name] = true
			}
		}
	}
	if !have[kafkax.HeaderEventID] && r.raw.EventID != "" {
		m.Headers = append(m.Headers, kafka.Header{Key: kafkax.HeaderEventID, Value: []byte(r.raw.EventID)})
	}
	if !have[kafkax.HeaderAccepted] && !r.acceptedAt.IsZero() {
		m.Headers = append(m.Headers, kafka.Header{Key: kafkax.HeaderAccepted,
			Value: []byte(r.acceptedAt.UTC().Format(time.RFC3339Nano))})
	}
	return m, nil
}

// writeOutputs writes the batch's emitted changes in input order in one
// synchronous call: records of one key share a partition (murmur2 on the
// key), so they land in the order decided. A change Kafka refuses as too
// large even alone is marked failed (too_large), so the dead-letter step
// that follows keeps its input record; the field limits keep every legal
// change far below the topic's max.message.bytes, so only a topic set up by
// hand with less gets there. The state already holds that change's version:
// redriving the same input is then dropped as a duplicate, and the fix is
// a newer version from the provider or reconcile --apply.
func (w *worker) writeOutputs(ctx context.Context, recs []record) error {
	var (
		msgs []kafka.Message
		from []int // recs index of each message
	)
	for i := range recs {
		r := &recs[i]
		if r.failed() || !r.decision.Emit() {
			continue
		}
		m, err := outputMessage(r)
		if err != nil {
			return err
		}
		msgs, from = append(msgs, m), append(from, i)
	}
	if len(msgs) == 0 {
		return nil
	}
	tooLarge, err := kafkax.WriteAll(ctx, w.out.Normalized, msgs)
	if err != nil {
		return err
	}
	for _, j := range tooLarge {
		recs[from[j]].fail(string(provider.ReasonTooLarge),
			fmt.Errorf("%s refused its normalized record of %d bytes as too large", kafkax.TopicNormalized, len(msgs[j].Value)))
	}
	return nil
}
