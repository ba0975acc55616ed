package kafkax_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// Offsets, EndOffsets and PartitionOffsets agree with what was written:
// every partition is listed, the ends add up to the records written, and
// an unknown topic is an error rather than an empty answer.
func TestOffsets(t *testing.T) {
	st := testenv.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := st.Topic(kafkax.TopicDLQ)
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: topic})
	defer w.Close()
	const n = 20
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: fmt.Appendf(nil, "key-%d", i), Value: []byte("v")}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	ends, err := kafkax.EndOffsets(ctx, st.Brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	spans, err := kafkax.Offsets(ctx, st.Brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(ends) != 3 || len(spans[topic]) != 3 {
		t.Fatalf("end offsets %v, spans %v: want the DLQ topic's 3 partitions", ends, spans)
	}
	var sum int64
	for p, end := range ends {
		sum += end
		one, err := kafkax.PartitionOffsets(ctx, st.Brokers, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		if want := (kafkax.Span{First: 0, End: end}); one != want || spans[topic][p] != want {
			t.Errorf("partition %d: PartitionOffsets %+v, Offsets %+v, want %+v", p, one, spans[topic][p], want)
		}
	}
	if sum != n {
		t.Errorf("end offsets %v add up to %d, want %d", ends, sum, n)
	}

	if got, err := kafkax.EndOffsets(ctx, st.Brokers, st.Names.Namespace+"no-such-topic"); err == nil {
		t.Errorf("unknown topic: %v, no error", got)
	}
}
