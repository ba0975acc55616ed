package processor

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// instance is one processor running in this test process.
type instance struct {
	p      *Processor
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// start runs a processor on the test's stack until stop or the test ends.
// edit may change its writers.
func start(t *testing.T, st *testenv.Stack, name string, edit func(*Writers)) *instance {
	t.Helper()
	return startWith(t, st, name, func() (Writers, func() error) {
		w, closeWriters := NewWriters(st.Brokers, st.Names)
		if edit != nil {
			edit(&w)
		}
		return w, closeWriters
	})
}

// startWith runs a processor whose workers write through outputs.
func startWith(t *testing.T, st *testenv.Stack, name string, outputs Outputs) *instance {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).With(zap.String("instance", name))
	p, err := New(Config{Brokers: st.Brokers, Names: st.Names, RestoreStall: 20 * time.Second}, provider.Default(), outputs, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{p: p, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- p.Run(ctx) }()
	t.Cleanup(func() {
		in.stop(t)
	})
	return in
}

// stop cancels the instance and waits until it has left the group.
func (in *instance) stop(t *testing.T) {
	t.Helper()
	in.once.Do(func() {
		in.cancel()
		select {
		case err := <-in.done:
			if err != nil {
				t.Errorf("processor: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("processor did not stop within 30s")
		}
	})
}

// metric sums a counter or gauge of the instance over all its labels.
func (in *instance) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := in.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// produce writes msgs to reviews.raw.v1, partitioned by key as every
// producer of the topic does.
func produce(t *testing.T, st *testenv.Stack, msgs ...kafka.Message) {
	t.Helper()
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicRaw)})
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce %d raw records: %v", len(msgs), err)
	}
}

// offsets returns each partition's first and end offsets of topic.
func offsets(ctx context.Context, brokers []string, topic string) (map[int][2]int64, error) {
	spans, err := kafkax.Offsets(ctx, brokers, topic)
	if err != nil {
		return nil, err
	}
	out := map[int][2]int64{}
	for p, s := range spans[topic] {
		out[p] = [2]int64{s.First, s.End}
	}
	return out, nil
}

// groupLag is what the processor's group has not committed yet of
// reviews.raw.v1, over all partitions, as an operator's lag check sees it.
func groupLag(st *testenv.Stack) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topic := st.Topic(kafkax.TopicRaw)
	offs, err := offsets(ctx, st.Brokers, topic)
	if err != nil {
		return 0, err
	}
	parts := make([]int, 0, len(offs))
	for p := range offs {
		parts = append(parts, p)
	}
	c := &kafka.Client{Addr: kafka.TCP(st.Brokers...), Timeout: 10 * time.Second}
	res, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: st.Names.Group(kafkax.GroupProcessor), Topics: map[string][]int{topic: parts}})
	if err != nil {
		return 0, err
	}
	if res.Error != nil {
		return 0, res.Error
	}
	committed := map[int]int64{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return 0, p.Error
		}
		committed[p.Partition] = p.CommittedOffset
	}
	var lag int64
	for p, o := range offs {
		c, ok := committed[p]
		if !ok || c < o[0] {
			c = o[0]
		}
		lag += o[1] - c
	}
	return lag, nil
}

// waitLagZero waits until the group has committed everything produced.
func waitLagZero(t *testing.T, st *testenv.Stack, within time.Duration) {
	t.Helper()
	testenv.Eventually(t, within, func() error {
		lag, err := groupLag(st)
		if err != nil {
			return err
		}
		if lag != 0 {
			return fmt.Errorf("consumer lag %d", lag)
		}
		return nil
	})
}

// readAll returns every record now in topic, partition by partition, each
// partition in offset order.
func readAll(t *testing.T, brokers []string, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs, err := offsets(ctx, brokers, topic)
	if err != nil {
		t.Fatalf("offsets of %s: %v", topic, err)
	}
	var out []kafka.Message
	for p := range len(offs) {
		o := offs[p]
		if o[1] <= o[0] {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(o[0]); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				t.Fatalf("read %s/%d: %v", topic, p, err)
			}
			out = append(out, m)
			if m.Offset >= o[1]-1 {
				break
			}
		}
		r.Close()
	}
	return out
}
