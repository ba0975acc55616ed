package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/store"
)

// testConfig is a fast poller against the fake generic provider.
func testConfig(f *fakeGeneric, holder string) Config {
	return Config{
		Providers:       []ProviderConfig{{Name: "generic", BaseURL: f.srv.URL, APIKey: fakeKey, Rate: 20}},
		Holder:          holder,
		Interval:        200 * time.Millisecond,
		Overlap:         50 * time.Millisecond,
		PageSize:        20,
		HTTPTimeout:     2 * time.Second,
		BackoffBase:     50 * time.Millisecond,
		BackoffMax:      500 * time.Millisecond,
		BreakerFailures: 3,
		BreakerTimeout:  time.Second,
		LeaseTTL:        3 * time.Second,
		QueueCheck:      100 * time.Millisecond,
		KafkaDeadline:   10 * time.Second,
	}
}

type running struct {
	svc  *Service
	reg  *prometheus.Registry
	stop context.CancelFunc
	// done is closed when Run has returned, with err.
	done chan struct{}
	err  error
}

// start runs a poller (Run and ConsumeRequests) on st until the test ends
// or stop is called; wait returns Run's error.
func start(t *testing.T, st *testenv.Stack, cfg Config) *running {
	t.Helper()
	raw := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicRaw)})
	dlq := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicDLQ)})
	t.Cleanup(func() { raw.Close(); dlq.Close() })
	reg := prometheus.NewRegistry()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).With(zap.String("holder", cfg.Holder))
	svc, err := New(cfg, provider.Default(), store.New(st.DB), raw, dlq, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{svc: svc, reg: reg, stop: cancel, done: make(chan struct{})}
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		_ = svc.ConsumeRequests(ctx, kafkax.GroupConfig{Brokers: st.Brokers, GroupID: st.Names.Group(kafkax.GroupPoller),
			Topic: st.Topic(kafkax.TopicSyncRequests), Log: log})
	}()
	go func() {
		r.err = svc.Run(ctx)
		cancel()
		<-consumed
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("poller did not stop within 30s")
		}
	})
	return r
}

// rawRecord is one record of reviews.raw.v1.
type rawRecord struct {
	key     string
	source  string
	eventID string
	env     envelope.Raw
}

// readTopic returns every record of a topic of st, partition by partition.
func readTopic(t *testing.T, st *testenv.Stack, topic kafkax.Topic) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []kafka.Message
	for p := 0; ; p++ {
		conn, err := kafka.DialLeader(ctx, "tcp", st.Brokers[0], st.Topic(topic), p)
		if err != nil {
			if p > 0 && (errors.Is(err, kafka.UnknownTopicOrPartition) || strings.Contains(err.Error(), "Unknown Topic Or Partition")) {
				return out
			}
			t.Fatalf("dial %s/%d: %v", topic, p, err)
		}
		first, last, err := conn.ReadOffsets()
		if err != nil {
			conn.Close()
			t.Fatal(err)
		}
		for off := first; off < last; {
			if _, err := conn.Seek(off, kafka.SeekAbsolute); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			batch := conn.ReadBatch(1, 50<<20)
			for {
				m, err := batch.ReadMessage()
				if err != nil {
					if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") {
						t.Logf("read %s/%d: %v", topic, p, err)
					}
					break
				}
				out = append(out, m)
				off = m.Offset + 1
			}
			batch.Close()
		}
		conn.Close()
		if p+1 >= partitionsOf(topic) {
			return out
		}
	}
}

func partitionsOf(topic kafkax.Topic) int {
	for _, s := range kafkax.Specs(kafkax.DefaultPartitions) {
		if s.Topic == topic {
			return s.Partitions
		}
	}
	return 1
}

// readRaw decodes every record of reviews.raw.v1.
func readRaw(t *testing.T, st *testenv.Stack) []rawRecord {
	t.Helper()
	var out []rawRecord
	for _, m := range readTopic(t, st, kafkax.TopicRaw) {
		env, err := envelope.ParseRaw(m.Value)
		if err != nil {
			t.Fatalf("raw record %s is not a raw envelope: %v", m.Key, err)
		}
		out = append(out, rawRecord{key: string(m.Key), source: envelope.Header(m, kafkax.HeaderSource),
			eventID: envelope.Header(m, kafkax.HeaderEventID), env: env})
	}
	return out
}

// changesOf returns "{review_id}:{version}" of the generic events published
// with source (any source when ""), counted.
func changesOf(t *testing.T, recs []rawRecord, source envelope.Source) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range recs {
		if source != "" && r.env.Source != source {
			continue
		}
		var ev provider.GenericEvent
		if err := json.Unmarshal(r.env.Payload, &ev); err != nil {
			continue
		}
		out[fmt.Sprintf("%s:%d", ev.Data.ReviewID, ev.Data.Version)]++
	}
	return out
}

func missing(want map[string]bool, got map[string]int) []string {
	var out []string
	for k := range want {
		if got[k] == 0 {
			out = append(out, k)
		}
	}
	return out
}

// produce writes sync requests to the test's reviews.sync-requests.v1.
func produce(t *testing.T, st *testenv.Stack, reqs ...envelope.SyncRequest) {
	t.Helper()
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicSyncRequests)})
	defer w.Close()
	msgs := make([]kafka.Message, len(reqs))
	for i, r := range reqs {
		b, _ := json.Marshal(r)
		key := r.MovieID
		if key == "" {
			key = r.Provider
		}
		msgs[i] = kafka.Message{Key: []byte(key), Value: b}
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

// health reads provider_health of provider.
func health(t *testing.T, st *testenv.Stack, provider string) store.Health {
	t.Helper()
	h, _, err := store.New(st.DB).LoadHealth(context.Background(), provider)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// gauge returns the value of a gauge or counter with the given labels, or
// -1 when absent.
func gauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	for _, m := range matching(t, reg, name, labels) {
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
	}
	return -1
}

// sumCounter adds a counter's values over every label set matching labels.
func sumCounter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, m := range matching(t, reg, name, labels) {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// matching returns the series of metric name whose labels include labels.
func matching(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue metric
				}
			}
			out = append(out, m)
		}
	}
	return out
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}
