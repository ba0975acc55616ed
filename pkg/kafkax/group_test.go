package kafkax_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// recorder is a Worker that records every record it made "durable" and can
// be told to fail a number of batches first.
type recorder struct {
	mu       sync.Mutex
	seen     map[string][]int64 // partition -> offsets handled, in order
	failures int
	owners   map[int]string
}

func (r *recorder) open(member string) kafkax.OpenFunc {
	return func(ctx context.Context, a kafkax.Assignment) (kafkax.Worker, int64, error) {
		r.mu.Lock()
		r.owners[a.Partition] = member
		r.mu.Unlock()
		return &worker{r: r, partition: a.Partition}, a.Committed, nil
	}
}

type worker struct {
	r         *recorder
	partition int
}

func (w *worker) Handle(ctx context.Context, batch []kafka.Message) error {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if w.r.failures > 0 {
		w.r.failures--
		return errors.New("injected transient failure")
	}
	for _, m := range batch {
		k := strconv.Itoa(m.Partition)
		w.r.seen[k] = append(w.r.seen[k], m.Offset)
	}
	return nil
}

func (w *worker) Close() {}

func produce(t *testing.T, st *testenv.Stack, topic string, n int) {
	t.Helper()
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: topic})
	defer w.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte(fmt.Sprintf("key-%d", i)), Value: []byte(strconv.Itoa(i))}
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

// waitHandled waits until r handled at least n records.
func (r *recorder) waitHandled(t *testing.T, n int) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		if got := r.total(); got < n {
			return fmt.Errorf("%d of %d records handled", got, n)
		}
		return nil
	})
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, offs := range r.seen {
		n += len(offs)
	}
	return n
}

func TestRunGroupRetriesFailedBatchesAndCommits(t *testing.T) {
	st := testenv.New(t)
	topic := st.Topic(kafkax.TopicRaw)
	produce(t, st, topic, 300)
	rec := &recorder{seen: map[string][]int64{}, failures: 3, owners: map[int]string{}}
	cfg := kafkax.GroupConfig{Brokers: st.Brokers, GroupID: st.Names.Group(kafkax.GroupProcessor), Topic: topic, MaxBatch: 50}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- kafkax.RunGroup(ctx, cfg, rec.open("a")) }()
	rec.waitHandled(t, 300)
	// Every offset of every partition exactly once, in order: the three
	// failed batches were handed again, not skipped.
	rec.mu.Lock()
	for p, offs := range rec.seen {
		for i, o := range offs {
			if o != int64(i) {
				t.Fatalf("partition %s: offsets %v: want 0..%d in order, each once", p, offs, len(offs)-1)
			}
		}
	}
	rec.mu.Unlock()
	// Committed offsets reach the group once Handle succeeded.
	testenv.Eventually(t, 20*time.Second, func() error {
		committed, err := groupOffsets(st, cfg.GroupID, topic)
		if err != nil {
			return err
		}
		var sum int64
		for _, o := range committed {
			sum += o
		}
		if sum != 300 {
			return fmt.Errorf("committed offsets sum to %d, want 300", sum)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunGroup returned %v after cancel, want nil", err)
	}
	// A new member of the group starts after the commits: nothing again.
	produce(t, st, topic, 10)
	rec2 := &recorder{seen: map[string][]int64{}, owners: map[int]string{}}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { _ = kafkax.RunGroup(ctx2, cfg, rec2.open("b")) }()
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := rec2.total(); n != 10 {
			return fmt.Errorf("the restarted member handled %d records, want the 10 new ones", n)
		}
		return nil
	})
}

func TestRunGroupSharesPartitions(t *testing.T) {
	st := testenv.New(t)
	topic := st.Topic(kafkax.TopicRaw)
	rec := &recorder{seen: map[string][]int64{}, owners: map[int]string{}}
	cfg := kafkax.GroupConfig{Brokers: st.Brokers, GroupID: st.Names.Group(kafkax.GroupSink), Topic: topic}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, m := range []string{"a", "b"} {
		go func() { _ = kafkax.RunGroup(ctx, cfg, rec.open(m)) }()
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		members := map[string]int{}
		for _, m := range rec.owners {
			members[m]++
		}
		if len(rec.owners) != kafkax.DefaultPartitions || members["a"] == 0 || members["b"] == 0 {
			return fmt.Errorf("owners %v: want all %d partitions split between a and b", rec.owners, kafkax.DefaultPartitions)
		}
		return nil
	})
}

// groupOffsets returns the group's committed offset per partition.
func groupOffsets(st *testenv.Stack, group, topic string) (map[int]int64, error) {
	c := &kafka.Client{Addr: kafka.TCP(st.Brokers...), Timeout: 5 * time.Second}
	res, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group,
		Topics: map[string][]int{topic: {0, 1, 2, 3, 4, 5}}})
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, p := range res.Topics[topic] {
		if p.CommittedOffset > 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// cuttable dials brokers like kafka-go's default dialer, and can cut every
// connection it made and refuse new ones until it is restored: a broker
// connection lost to a network fault, while the broker itself stays up.
type cuttable struct {
	mu      sync.Mutex
	cut     bool
	conns   []net.Conn
	refused int
}

func (c *cuttable) dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: 5 * time.Second, DualStack: true,
		DialFunc: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.cut {
				c.refused++
				return nil, fmt.Errorf("dial %s: connection cut by the test", addr)
			}
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				c.conns = append(c.conns, conn)
			}
			return conn, err
		}}
}

func (c *cuttable) refusals() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused
}

func (c *cuttable) set(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for _, conn := range c.conns {
			_ = conn.Close()
		}
		c.conns = nil
	}
}

// TestRunGroupReopensACutReader: a partition reader whose broker
// connections are cut, long enough for kafka-go to give up and return an
// error, is opened again at the next unhandled record; the member goes on
// reading without a rebalance, every record once and in order.
func TestRunGroupReopensACutReader(t *testing.T) {
	st := testenv.New(t)
	topic := st.Topic(kafkax.TopicRaw)
	produce(t, st, topic, 60)
	var (
		mu    sync.Mutex
		opens int
	)
	rec := &recorder{seen: map[string][]int64{}, owners: map[int]string{}}
	open := func(ctx context.Context, a kafkax.Assignment) (kafkax.Worker, int64, error) {
		mu.Lock()
		opens++
		mu.Unlock()
		return rec.open("a")(ctx, a)
	}
	link := &cuttable{}
	core, logs := observer.New(zap.WarnLevel)
	cfg := kafkax.GroupConfig{Brokers: st.Brokers, GroupID: st.Names.Group(kafkax.GroupProcessor), Topic: topic,
		Dialer: link.dialer(), Log: zap.New(core)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- kafkax.RunGroup(ctx, cfg, open) }()
	defer func() {
		cancel()
		<-done
	}()
	wantHandled := func(n int) {
		testenv.Eventually(t, 60*time.Second, func() error {
			if got := rec.total(); got != n {
				return fmt.Errorf("%d records handled, want %d", got, n)
			}
			return nil
		})
	}
	wantHandled(60)

	link.set(true)
	produce(t, st, topic, 60)
	// kafka-go's reader retries a failed connection three times before
	// FetchMessage returns the error: wait for more refusals than that
	// per partition.
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := link.refusals(); n < 4*kafkax.DefaultPartitions {
			return fmt.Errorf("%d dials refused while cut, want %d", n, 4*kafkax.DefaultPartitions)
		}
		return nil
	})
	link.set(false)
	wantHandled(120)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for p, offs := range rec.seen {
		for i, o := range offs {
			if o != int64(i) {
				t.Fatalf("partition %s: offsets %v: want 0..%d in order, each once", p, offs, len(offs)-1)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if opens != kafkax.DefaultPartitions {
		t.Fatalf("%d partition opens, want %d: the member rejoined instead of reopening its readers", opens, kafkax.DefaultPartitions)
	}
	if n := logs.FilterMessage("partition reader failed, opening it again").Len(); n == 0 {
		t.Fatal("no reader was opened again after the cut")
	} else {
		t.Logf("readers opened again %d times after %d refused dials", n, link.refusals())
	}
}
