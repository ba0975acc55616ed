package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/sink/internal/store"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func event(t testing.TB, op review.Op, ext, movie string, version int64) kafka.Message {
	t.Helper()
	rating := 70
	r := review.Review{ID: review.Key("generic", ext), Provider: "generic", ExternalID: ext, MovieID: movie,
		Author: "Ann", Rating: &rating, Title: "v" + strconv.FormatInt(version, 10), Version: version,
		SourceUpdatedAt: t0.Add(time.Duration(version) * time.Minute), IngestedAt: t0}
	b, err := review.Event{Op: op, Review: r}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Key: []byte(r.ID), Value: b, Headers: []kafka.Header{
		{Key: kafkax.HeaderAccepted, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		{Key: kafkax.HeaderEventID, Value: []byte("evt_" + ext + "_" + strconv.FormatInt(version, 10))},
	}}
}

func produce(t testing.TB, st *testenv.Stack, msgs ...kafka.Message) {
	t.Helper()
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicNormalized)})
	defer w.Close()
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

// startSink runs a sink on databaseURL until the test ends.
func startSink(t *testing.T, st *testenv.Stack, databaseURL string, cfg Config) (*Sink, *prometheus.Registry) {
	t.Helper()
	db, err := pgstore.Open(context.Background(), databaseURL, 4)
	if err != nil {
		t.Fatal(err)
	}
	dlq := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicDLQ)})
	cfg.Brokers, cfg.Names = st.Brokers, st.Names
	reg := prometheus.NewRegistry()
	s, err := New(cfg, store.New(db, store.DefaultCopyFrom), dlq, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sink: %v", err)
		}
		dlq.Close()
		db.Close()
	})
	return s, reg
}

func storedVersions(st *testenv.Stack) (map[string]string, error) {
	rows, err := st.DB.Query(context.Background(), `SELECT id, version, deleted FROM reviews`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id string
		var v int64
		var d bool
		if err := rows.Scan(&id, &v, &d); err != nil {
			return nil, err
		}
		out[id] = fmt.Sprintf("%d%s", v, map[bool]string{true: "d"}[d])
	}
	return out, rows.Err()
}

func offsetsSum(st *testenv.Stack) int64 {
	var n int64
	_ = st.DB.QueryRow(context.Background(), `SELECT COALESCE(sum(next_offset), 0) FROM consumer_offsets`).Scan(&n)
	return n
}

func TestSinkWritesBatchesAndDeadLettersBadRecords(t *testing.T) {
	st := testenv.New(t)
	bad := kafka.Message{Key: []byte("generic:broken"), Value: []byte("not json")}
	outOfRange := event(t, review.OpUpsert, "r101", "tt0000001", 1)
	outOfRange.Value = []byte(`{"op":"upsert","review":{"id":"generic:r101","provider":"generic","external_id":"r101","movie_id":"tt0000001","rating":101,"version":1,"source_updated_at":"2026-11-20T10:00:00Z","ingested_at":"2026-11-20T10:00:00Z"}}`)
	produce(t, st,
		event(t, review.OpUpsert, "a", "tt0000001", 2),
		event(t, review.OpUpsert, "a", "tt0000001", 1), // late and older
		bad, outOfRange,
		event(t, review.OpUpsert, "b", "tt0000001", 1),
		event(t, review.OpDelete, "b", "", 2),
		event(t, review.OpUpsert, "c", "tt0000002", 3),
		event(t, review.OpUpsert, "c", "tt0000002", 3), // duplicate
	)
	s, _ := startSink(t, st, st.DatabaseURL, Config{})
	want := map[string]string{"generic:a": "2", "generic:b": "2d", "generic:c": "3"}
	testenv.Eventually(t, 60*time.Second, func() error {
		got, err := storedVersions(st)
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("store %v, want %v", got, want)
		}
		if n := offsetsSum(st); n != 8 {
			return fmt.Errorf("stored offsets sum to %d, want all 8 records consumed", n)
		}
		return nil
	})
	// Both refused records are on the dead-letter topic with stage sink.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicDLQ),
		GroupID: st.Names.Group("dlq-reader"), StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	reasons := map[string]string{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(reasons) < 2 {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("dead letters %v: %v", reasons, err)
		}
		var dl envelope.DeadLetter
		if err := json.Unmarshal(m.Value, &dl); err != nil {
			t.Fatal(err)
		}
		if dl.Stage != envelope.StageSink || dl.Offset == nil {
			t.Fatalf("dead letter %+v: want stage sink with the record's offset", dl)
		}
		reasons[dl.Key] = dl.Reason
	}
	if reasons["generic:broken"] != "not_json" || reasons["generic:r101"] != "invalid_event" {
		t.Fatalf("dead letters %v", reasons)
	}
	if n := testutil.ToFloat64(s.m.rows.WithLabelValues(outcomeDead)); n != 2 {
		t.Fatalf("dead_lettered rows metric %v, want 2", n)
	}
}

// proxy forwards TCP connections to PostgreSQL and can cut them all and
// refuse new ones, as a PostgreSQL that went down would.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setDown(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

// PostgreSQL going away mid-load opens the breaker and pauses consumption;
// once it is back, the sink resumes and nothing is lost or applied twice.
func TestSinkPausesWhilePostgresIsDown(t *testing.T) {
	st := testenv.New(t)
	u, err := url.Parse(st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	s, _ := startSink(t, st, u.String(), Config{BreakerFailures: 2, BreakerOpen: 300 * time.Millisecond, TxTimeout: 3 * time.Second})

	var first []kafka.Message
	for i := range 50 {
		first = append(first, event(t, review.OpUpsert, "p"+strconv.Itoa(i), "tt0000001", 1))
	}
	produce(t, st, first...)
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := offsetsSum(st); n != 50 {
			return fmt.Errorf("%d of 50 consumed", n)
		}
		return nil
	})
	p.setDown(true)
	var second []kafka.Message
	for i := range 50 {
		second = append(second, event(t, review.OpUpsert, "p"+strconv.Itoa(i), "tt0000001", 2))
	}
	produce(t, st, second...)
	testenv.Eventually(t, 30*time.Second, func() error {
		if st := s.BreakerState(); st != "open" {
			return fmt.Errorf("breaker %s, want open while PostgreSQL is unreachable", st)
		}
		return nil
	})
	p.setDown(false)
	testenv.Eventually(t, 60*time.Second, func() error {
		got, err := storedVersions(st)
		if err != nil {
			return err
		}
		for i := range 50 {
			if v := got["generic:p"+strconv.Itoa(i)]; v != "2" {
				return fmt.Errorf("p%d at %q, want version 2", i, v)
			}
		}
		if n := offsetsSum(st); n != 100 {
			return fmt.Errorf("%d of 100 consumed", n)
		}
		return nil
	})
	if s.BreakerState() != "closed" {
		t.Fatalf("breaker %s after recovery, want closed", s.BreakerState())
	}
}

// A record PostgreSQL itself refuses (here: a check constraint that only
// this test's database has) is found by halving the batch, dead-lettered,
// and every other record of the batch is written.
func TestSinkIsolatesARecordPostgresRefuses(t *testing.T) {
	st := testenv.New(t)
	if _, err := st.DB.Exec(context.Background(), `ALTER TABLE reviews ADD CONSTRAINT test_refuse CHECK (title <> 'v13')`); err != nil {
		t.Fatal(err)
	}
	var msgs []kafka.Message
	for i := range 40 {
		msgs = append(msgs, event(t, review.OpUpsert, "q"+strconv.Itoa(i), "tt0000001", int64(1+i%20)))
	}
	// Every partition's batch is whole before the sink starts.
	produce(t, st, msgs...)
	s, _ := startSink(t, st, st.DatabaseURL, Config{})
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := offsetsSum(st); n != 40 {
			return fmt.Errorf("%d of 40 consumed", n)
		}
		return nil
	})
	got, err := storedVersions(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 38 || got["generic:q12"] != "" || got["generic:q32"] != "" {
		t.Fatalf("stored %d rows (%v); want all but the two v13 records", len(got), got)
	}
	if n := testutil.ToFloat64(s.m.deadLetters.WithLabelValues("store_rejected")); n != 2 {
		t.Fatalf("store_rejected dead letters %v, want 2", n)
	}
}
