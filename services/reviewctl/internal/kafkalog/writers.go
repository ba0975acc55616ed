package kafkalog

import (
	"context"
	"errors"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// Writers writes to reviewpipe's topics, one kafkax writer (acks=all) per
// topic, opened on first use. Not safe for concurrent use; the caller
// closes it.
type Writers struct {
	brokers []string
	names   kafkax.Names
	open    map[kafkax.Topic]*kafka.Writer
}

// NewWriters returns Writers on the bootstrap brokers, topics named by names.
func NewWriters(brokers []string, names kafkax.Names) *Writers {
	return &Writers{brokers: brokers, names: names, open: map[kafkax.Topic]*kafka.Writer{}}
}

// Write writes msgs to topic and returns once every in-sync replica has
// them, or the first error.
func (w *Writers) Write(ctx context.Context, topic kafkax.Topic, msgs ...kafka.Message) error {
	kw := w.open[topic]
	if kw == nil {
		kw = kafkax.NewWriter(kafkax.WriterConfig{Brokers: w.brokers, Topic: w.names.Topic(topic)})
		w.open[topic] = kw
	}
	return kw.WriteMessages(ctx, msgs...)
}

// Close flushes and closes every writer opened.
func (w *Writers) Close() error {
	var errs []error
	for _, kw := range w.open {
		errs = append(errs, kw.Close())
	}
	return errors.Join(errs...)
}
