package load

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// LightPhase is what one light-load phase measured.
type LightPhase struct {
	Rate     float64         `json:"deliveries_per_s"`
	Webhooks Summary         `json:"webhooks"`
	Hops     map[string]Dist `json:"hops"` // Hops by name, and EndToEnd ("live")
	Coverage float64         `json:"live_coverage"`
}

// light runs an open-loop phase at each of LightRates (single-review
// deliveries over LightMovies movies) with every movie's event stream open
// through the api: webhook answer latency, webhook to SSE event, and the
// per-hop breakdown from the records' own timestamps.
func (ru *runner) light(ctx context.Context) error {
	movies := max(1, ru.cfg.LightMovies)
	streamCtx, stop := context.WithCancel(ctx)
	defer stop()
	st, err := OpenStreams(streamCtx, ru.api.URL(), movies)
	if err != nil {
		return err
	}
	for _, rate := range ru.cfg.LightRates {
		if err := ru.lightPhase(ctx, st, rate, movies); err != nil {
			return err
		}
	}
	return nil
}

// LightKey is the metric name prefix of the light phase at rate.
func LightKey(rate float64) string { return "light" + strconv.FormatFloat(rate, 'f', -1, 64) + "_" }

func (ru *runner) lightPhase(ctx context.Context, st *Streams, rate float64, movies int) error {
	cfg, m, key := ru.cfg, ru.m, LightKey(rate)
	prefix := strings.TrimSuffix(key, "_")
	ru.logf("  %s phase: %g deliveries/s open loop, 1 review each, over %d movies with their event streams open, %s", prefix, rate, movies, cfg.Light)
	sent := &sync.Map{}
	s := &Sender{Key: ru.key, K: 1, Movies: movies, Prefix: prefix, Client: ru.client, Sent: sent}
	mk := ru.mark()
	samples := s.OpenLoop(ctx, rate, cfg.Light, 4096)
	cores := ru.cores(mk, 0)
	ru.want += s.Accepted.Load()
	if _, err := ru.settle(ctx, prefix); err != nil {
		return err
	}
	st.WaitFor(sent, 3*time.Second)
	traces, err := ru.traces(ctx, prefix, sent, st)
	if err != nil {
		return err
	}
	ph := LightPhase{Rate: rate, Webhooks: Summarize(samples), Hops: Breakdown(traces)}
	live := ph.Hops[EndToEnd.Name]
	ph.Coverage = ratio(live.Count, len(traces))
	ru.r.Light = append(ru.r.Light, ph)
	m[key+"offered_per_s"] = rate
	m[key+"webhook_p50_ms"], m[key+"webhook_p99_ms"], m[key+"webhook_p999_ms"] = ph.Webhooks.P50, ph.Webhooks.P99, ph.Webhooks.P999
	m[key+"webhook_ok_ratio"] = ratio(ph.Webhooks.OK, ph.Webhooks.Count)
	m[key+"live_coverage"] = ph.Coverage
	for name, d := range ph.Hops {
		m[key+name+"_p50_ms"], m[key+name+"_p99_ms"], m[key+name+"_p999_ms"] = d.P50, d.P99, d.P999
	}
	for name, c := range cores {
		m[key+"cpu_cores_"+name] = c
	}
	perUnit(m, key+"cpu_us_per_review_", cores, float64(s.Accepted.Load())/cfg.Light.Seconds())
	ru.logf("  %s phase: webhook p50 %.1f / p99 %.1f / p99.9 %.1f ms; sent -> SSE event p50 %.1f / p99 %.1f / p99.9 %.1f ms (%.0f%% seen)",
		prefix, ph.Webhooks.P50, ph.Webhooks.P99, ph.Webhooks.P999, live.P50, live.P99, live.P999, 100*ph.Coverage)
	for _, h := range Hops {
		ru.logf("    %-8s p50 %6.1f ms, p99 %6.1f ms  %s", h.Name, ph.Hops[h.Name].P50, ph.Hops[h.Name].P99, h.Label)
	}
	ru.limit(prefix, cores, false)
	return nil
}

// traces gathers each review of the phase (ids generic:<prefix>-*) with
// the moments the generator saw (sent, notified, streamed) and the ones the
// records carry: the raw and normalized records from Kafka and the row's
// committed_at from PostgreSQL.
func (ru *runner) traces(ctx context.Context, prefix string, sent *sync.Map, st *Streams) ([]Trace, error) {
	by := map[string]*Trace{}
	sent.Range(func(k, v any) bool {
		by[k.(string)] = &Trace{Sent: v.(time.Time)}
		return true
	})
	ru.vis.each(func(id string, at time.Time) {
		if t := by[id]; t != nil {
			t.Notified = at
		}
	})
	st.each(func(id string, at time.Time) {
		if t := by[id]; t != nil {
			t.Streamed = at
		}
	})
	err := readTopic(ctx, ru.sl.Brokers, ru.sl.Names.Topic(kafkax.TopicRaw), func(msg kafka.Message) {
		t := by[string(msg.Key)]
		if t == nil || !t.Raw.IsZero() {
			return
		}
		var v struct {
			ReceivedAt time.Time `json:"received_at"`
		}
		if json.Unmarshal(msg.Value, &v) == nil {
			t.Received = v.ReceivedAt
		}
		t.Raw = msg.Time
	})
	if err != nil {
		return nil, fmt.Errorf("read the raw topic: %w", err)
	}
	err = readTopic(ctx, ru.sl.Brokers, ru.sl.Names.Topic(kafkax.TopicNormalized), func(msg kafka.Message) {
		if t := by[string(msg.Key)]; t != nil && t.Normalized.IsZero() {
			t.Normalized = msg.Time
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read the normalized topic: %w", err)
	}
	err = CommittedAt(ctx, ru.sl.DB, "generic:"+prefix+"-", func(id string, at time.Time) {
		if t := by[id]; t != nil {
			t.TxStart = at
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read committed_at: %w", err)
	}
	out := make([]Trace, 0, len(by))
	for _, t := range by {
		out = append(out, *t)
	}
	return out, nil
}

// readTopic calls f with every record of every partition of topic, from the
// first offset to the end as it is when called.
func readTopic(ctx context.Context, brokers []string, topic string, f func(kafka.Message)) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return err
	}
	parts, err := c.ReadPartitions(topic)
	c.Close()
	if err != nil {
		return err
	}
	for _, p := range parts {
		if err := readPartition(ctx, brokers[0], topic, p.ID, f); err != nil {
			return fmt.Errorf("partition %d: %w", p.ID, err)
		}
	}
	return nil
}

func readPartition(ctx context.Context, broker, topic string, partition int, f func(kafka.Message)) error {
	conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, partition)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return err
	}
	for off := first; off < last; {
		if _, err := conn.Seek(off, kafka.SeekAbsolute); err != nil {
			return err
		}
		b := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: 8 << 20, MaxWait: time.Second})
		for {
			msg, err := b.ReadMessage()
			if err != nil {
				break
			}
			f(msg)
			off = msg.Offset + 1
		}
		if err := b.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Streams are the api's event streams of some movies, read by the
// generator: when each review's first `review` event arrived.
type Streams struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// OpenStreams opens GET /v1/movies/{id}/events for the first movies movies
// on the api at base and returns once every stream has sent its `ready`
// event (the api has subscribed it). The streams close when ctx ends.
func OpenStreams(ctx context.Context, base string, movies int) (*Streams, error) {
	st := &Streams{seen: map[string]time.Time{}}
	ready := make(chan error, movies)
	for i := range movies {
		go st.read(ctx, base+"/v1/movies/"+MovieID(i)+"/events", ready)
	}
	timeout := time.After(30 * time.Second)
	for range movies {
		select {
		case err := <-ready:
			if err != nil {
				return nil, fmt.Errorf("event stream: %w", err)
			}
		case <-timeout:
			return nil, fmt.Errorf("event streams not ready within 30s")
		}
	}
	return st, nil
}

func (st *Streams) read(ctx context.Context, url string, ready chan<- error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		ready <- err
		return
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		ready <- err
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		ready <- fmt.Errorf("GET %s: %s", url, res.Status)
		return
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: ") && event == "ready":
			ready <- nil
		case strings.HasPrefix(line, "data: ") && event == "review":
			st.record(line[len("data: "):], time.Now())
		case line == "":
			event = ""
		}
	}
}

// record notes the arrival of a `review` event's data.
func (st *Streams) record(data string, at time.Time) {
	var ev struct {
		Review struct {
			ID string `json:"id"`
		} `json:"review"`
	}
	if json.Unmarshal([]byte(data), &ev) != nil || ev.Review.ID == "" {
		return
	}
	st.mu.Lock()
	if _, ok := st.seen[ev.Review.ID]; !ok {
		st.seen[ev.Review.ID] = at
	}
	st.mu.Unlock()
}

func (st *Streams) each(f func(id string, at time.Time)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for id, at := range st.seen {
		f(id, at)
	}
}

// WaitFor waits until every id of sent has had its event, or timeout.
func (st *Streams) WaitFor(sent *sync.Map, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		missing := false
		st.mu.Lock()
		sent.Range(func(k, _ any) bool {
			_, ok := st.seen[k.(string)]
			missing = !ok
			return ok
		})
		st.mu.Unlock()
		if !missing {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
