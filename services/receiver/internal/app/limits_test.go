package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

// rawRequest starts a signed delivery of body on its own connection and
// sends its headers and the first sent bytes of body only; the caller
// sends the rest (or not) on the returned connection.
func rawRequest(t *testing.T, url, id string, ts time.Time, body []byte, sent int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h := http.Header{}
	webhook.SetHeaders(h, key1, id, ts, body)
	head := fmt.Sprintf("POST /webhooks/generic HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	for k := range h {
		head += k + ": " + h.Get(k) + "\r\n"
	}
	if _, err := conn.Write(append([]byte(head+"\r\n"), body[:sent]...)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// readAnswer reads one answer from conn: status, headers and JSON body.
func readAnswer(t *testing.T, conn net.Conn) (*http.Response, map[string]any) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer %d is not JSON: %q", res.StatusCode, b)
	}
	return res, out
}

// docs/contract.md §8: a body that has not arrived whole within
// WEBHOOK_BODY_TIMEOUT is answered 408 with a JSON error and the
// connection closed, whether it stalls or trickles; one that ends just
// inside the timeout is accepted.
func TestBodyTimeout(t *testing.T) {
	const timeout = time.Second
	f := newFixture(t, nil, Config{BodyTimeout: timeout})
	body := []byte(event("bt-1", 1))

	late := func(t *testing.T, conn net.Conn, start time.Time) {
		t.Helper()
		res, out := readAnswer(t, conn)
		took := time.Since(start)
		if res.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("got %d %v, want 408", res.StatusCode, out)
		}
		if msg, _ := out["error"].(string); !strings.Contains(msg, "WEBHOOK_BODY_TIMEOUT") {
			t.Fatalf("408 error %q does not say what was wrong", msg)
		}
		if !res.Close { // http.ReadResponse takes "Connection: close" out of the headers
			t.Errorf("408 without Connection: close")
		}
		if took < timeout || took > timeout+time.Second {
			t.Errorf("408 after %s, want just after the %s timeout", took, timeout)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("the connection stayed open after the 408: %d %v", n, err)
		}
	}
	t.Run("stalls", func(t *testing.T) {
		start := time.Now()
		late(t, rawRequest(t, f.url, "bt-stall", time.Now(), body, len(body)/2), start)
	})
	t.Run("trickles past the timeout", func(t *testing.T) {
		start := time.Now()
		conn := rawRequest(t, f.url, "bt-trickle", time.Now(), body, 10)
		// A byte every 100ms: never idle long, but the whole body would
		// take several seconds.
		go func() {
			for i := 10; i < len(body); i++ {
				if _, err := conn.Write(body[i : i+1]); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		late(t, conn, start)
	})
	t.Run("ends just inside", func(t *testing.T) {
		conn := rawRequest(t, f.url, "bt-inside", time.Now(), body, len(body)/2)
		time.Sleep(timeout - 250*time.Millisecond) // the client's pace
		if _, err := conn.Write(body[len(body)/2:]); err != nil {
			t.Fatal(err)
		}
		if res, out := readAnswer(t, conn); res.StatusCode != http.StatusOK || out["status"] != "accepted" {
			t.Fatalf("got %d %v, want 200 accepted", res.StatusCode, out)
		}
	})
	if n := testutil.ToFloat64(f.rc.m.refusals.WithLabelValues("generic", refusedBodyTimeout)); n != 2 {
		t.Errorf("body_timeout refusals %v, want 2", n)
	}
}

// Unfinished bodies hold no in-flight slot: with one slot and several
// connections stuck in their bodies, a signed delivery is answered at once.
func TestSlowBodiesHoldNoSlot(t *testing.T) {
	f := newFixture(t, nil, Config{MaxInFlight: 1})
	for i := range 5 {
		rawRequest(t, f.url, fmt.Sprintf("slow-%d", i), time.Now(), []byte(event("s", 1)), 1)
	}
	// Before the fix the first of them took the only slot; give the
	// server the time to reach their handlers.
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := testutil.ToFloat64(f.rc.m.answers.WithLabelValues("generic", "429")); n != 0 {
			return fmt.Errorf("%v deliveries answered 429", n)
		}
		start := time.Now()
		code, out, _ := f.send(t, delivery{id: fmt.Sprintf("fast-%d", time.Now().UnixNano()), body: event("fast", 1)})
		if code != http.StatusOK {
			t.Fatalf("signed delivery beside slow bodies: %d %v, want 200", code, out)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("signed delivery took %s", d)
		}
		return nil
	})
}

// RECEIVER_MAX_IN_FLIGHT counts verified deliveries waiting on Kafka: with
// one slot and a Kafka that does not answer, a second signed delivery is
// answered 429 with Retry-After at once, and the slot is free again once
// the first is answered.
func TestInFlightLimit(t *testing.T) {
	f := newFixtureWith(t, fixtureOpts{hung: true, cfg: Config{MaxInFlight: 1, KafkaDeadline: 2 * time.Second},
		writer: kafkax.WriterConfig{WriteTimeout: time.Second, MaxAttempts: 1}})
	first := make(chan int, 1)
	go func() {
		code, _, _ := f.send(t, delivery{id: "if-1", body: event("if1", 1)})
		first <- code
	}()
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := len(f.rc.inflight); n != 1 {
			return fmt.Errorf("%d deliveries in flight, want the first", n)
		}
		return nil
	})
	start := time.Now()
	code, out, h := f.send(t, delivery{id: "if-2", body: event("if2", 1)})
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("got %d %v, want 429 with Retry-After", code, out)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("429 after %s, want at once", d)
	}
	if code := <-first; code != http.StatusServiceUnavailable {
		t.Fatalf("the delivery waiting on a hung Kafka got %d, want 503", code)
	}
	if code, out, _ := f.send(t, delivery{id: "if-3", body: event("if3", 1)}); code != http.StatusServiceUnavailable {
		t.Fatalf("after the slot was freed: %d %v, want 503 from the hung Kafka", code, out)
	}
	if n := testutil.ToFloat64(f.rc.m.refusals.WithLabelValues("generic", refusedInFlight)); n != 1 {
		t.Fatalf("in_flight refusals %v, want 1", n)
	}
}

// RECEIVER_MAX_PENDING_BYTES against a broker that takes records and never
// acknowledges them: deliveries answered 503 after the Kafka deadline keep
// their bytes counted while kafka-go still holds them; a delivery that
// fills the budget exactly is still handed to Kafka, one byte past it is
// answered 503 with Retry-After at once; once kafka-go gives up on the
// records the budget is free again.
func TestPendingBytesBudget(t *testing.T) {
	fixed := time.Now().Truncate(time.Second)
	body := event("pending", 1)
	body = strings.Replace(body, `"rating"`, `"body":"`+strings.Repeat("b", 900-len(body))+`","rating"`, 1)
	adapter, _ := provider.Default().Get("generic")
	changes, err := adapter.Split([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := rawMessages("generic", "pend-0", changes, fixed)
	if err != nil {
		t.Fatal(err)
	}
	cost := recordBytes(msgs) // the same for every id of this length
	const maxBody = 1024
	if len(body) > maxBody || 2*cost-1 < 2*maxBody {
		t.Fatalf("body of %d bytes and records of %d do not suit the test", len(body), cost)
	}

	setup := func(t *testing.T, budget int64) *fixture {
		return newFixtureWith(t, fixtureOpts{hung: true, now: func() time.Time { return fixed },
			cfg:    Config{MaxBody: maxBody, MaxPendingBytes: budget, KafkaDeadline: time.Second},
			writer: kafkax.WriterConfig{WriteTimeout: 4 * time.Second, MaxAttempts: 1}})
	}
	pending := func(f *fixture) int64 { return f.rc.pending.bytes() }
	queue := func(t *testing.T, f *fixture, id string, want int64) <-chan int {
		t.Helper()
		codes := make(chan int, 1)
		go func() {
			code, _, _ := f.send(t, delivery{id: id, body: body, ts: fixed})
			codes <- code
		}()
		testenv.Eventually(t, 5*time.Second, func() error {
			if got := pending(f); got != want {
				return fmt.Errorf("%d bytes pending, want %d", got, want)
			}
			return nil
		})
		return codes
	}
	refusedAtOnce := func(t *testing.T, f *fixture, id string) {
		t.Helper()
		start := time.Now()
		code, out, h := f.send(t, delivery{id: id, body: body, ts: fixed})
		if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Fatalf("past the budget: %d %v, want 503 with Retry-After", code, out)
		}
		if msg, _ := out["error"].(string); !strings.Contains(msg, "RECEIVER_MAX_PENDING_BYTES") {
			t.Fatalf("error %q does not name the limit", msg)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("refused after %s, want at once", d)
		}
		if n := testutil.ToFloat64(f.rc.m.refusals.WithLabelValues("generic", refusedPendingBytes)); n != 1 {
			t.Fatalf("pending_bytes refusals %v, want 1", n)
		}
	}

	t.Run("exactly the budget", func(t *testing.T) {
		f := setup(t, 2*cost)
		a := queue(t, f, "pend-1", cost)
		b := queue(t, f, "pend-2", 2*cost)
		refusedAtOnce(t, f, "pend-3")
		for _, c := range []<-chan int{a, b} {
			if code := <-c; code != http.StatusServiceUnavailable {
				t.Fatalf("a delivery waiting on the hung broker got %d, want 503", code)
			}
		}
		// Answered, but kafka-go still holds their records.
		if got := pending(f); got != 2*cost {
			t.Fatalf("%d bytes pending after the 503s, want %d while kafka-go holds them", got, 2*cost)
		}
		testenv.Eventually(t, 15*time.Second, func() error {
			if got := pending(f); got != 0 {
				return fmt.Errorf("%d bytes still pending after kafka-go's write timeout", got)
			}
			return nil
		})
		if code := <-queue(t, f, "pend-4", cost); code != http.StatusServiceUnavailable {
			t.Fatalf("after the budget emptied: %d, want 503 after the Kafka deadline", code)
		}
	})
	t.Run("one byte past", func(t *testing.T) {
		f := setup(t, 2*cost-1)
		a := queue(t, f, "pend-1", cost)
		refusedAtOnce(t, f, "pend-2")
		<-a
	})
}

// The budget's accounting with real kafka-go writers: bytes are counted
// from the hand-over until kafka-go is done, whether the write succeeds,
// fails after the caller stopped waiting, or fails before queueing.
func TestPendingBytesAccounting(t *testing.T) {
	st := testenv.New(t)
	msgs := []kafka.Message{
		{Key: []byte("k1"), Value: []byte(`{"a":1}`), Headers: []kafka.Header{{Key: "h", Value: []byte("vv")}}},
		{Key: []byte("key-2"), Value: []byte(`{}`)},
	}
	const size = 2 + 7 + 1 + 2 + 5 + 2
	if got := recordBytes(msgs); got != size {
		t.Fatalf("recordBytes %d, want %d", got, size)
	}
	p := &pendingBytes{max: 1 << 20}
	ctx := context.Background()

	ok := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicRaw)})
	defer ok.Close()
	if err := p.write(ctx, ok, msgs); err != nil || p.bytes() != 0 {
		t.Fatalf("written: %v, %d bytes still pending, want 0", err, p.bytes())
	}

	closed := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicRaw)})
	closed.Close()
	if err := p.write(ctx, closed, msgs); !errors.Is(err, io.ErrClosedPipe) || p.bytes() != 0 {
		t.Fatalf("closed writer: %v, %d bytes pending, want io.ErrClosedPipe and 0", err, p.bytes())
	}
	huge := []kafka.Message{{Key: []byte("k"), Value: make([]byte, kafkax.BatchBytes+1)}}
	var tooLarge kafka.MessageTooLargeError
	if err := p.write(ctx, ok, huge); !errors.As(err, &tooLarge) || p.bytes() != 0 {
		t.Fatalf("record too large: %v, %d bytes pending, want MessageTooLargeError and 0", err, p.bytes())
	}

	broker := hungBroker(t, "hung-topic")
	hung := kafkax.NewWriter(kafkax.WriterConfig{Brokers: []string{broker}, Topic: "hung-topic", WriteTimeout: 2 * time.Second, MaxAttempts: 1})
	defer hung.Close()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := p.write(short, hung, msgs); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung broker: %v, want the caller's deadline", err)
	}
	if got := p.bytes(); got != size {
		t.Fatalf("%d bytes pending after the caller gave up, want %d while kafka-go holds them", got, size)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := p.bytes(); got != 0 {
			return fmt.Errorf("%d bytes pending after kafka-go failed the write", got)
		}
		return nil
	})
}

func TestPendingBytesTake(t *testing.T) {
	p := &pendingBytes{max: 100}
	steps := []struct {
		take, give int64
		ok         bool
		pending    int64
	}{
		{take: 60, ok: true, pending: 60},
		{take: 40, ok: true, pending: 100}, // exactly the budget
		{take: 1, ok: false, pending: 100}, // one byte past
		{give: 40, pending: 60},
		{take: 41, ok: false, pending: 60},
		{take: 40, ok: true, pending: 100},
		{give: 40, pending: 60},
		{give: 60, pending: 0},
		{take: 150, ok: true, pending: 150}, // larger than the budget, alone
		{take: 1, ok: false, pending: 150},
		{give: 150, pending: 0},
	}
	for i, s := range steps {
		if s.give > 0 {
			p.give(s.give)
		} else if got := p.take(s.take); got != s.ok {
			t.Fatalf("step %d: take(%d) = %v, want %v", i, s.take, got, s.ok)
		}
		if got := p.bytes(); got != s.pending {
			t.Fatalf("step %d: %d bytes pending, want %d", i, got, s.pending)
		}
	}
}

// docs/contract.md §2: a 400 whose body was kept carries "dead_letter_id"; the same
// refused delivery sent again, one after the other or at once, gets the same
// 400 with the same dead_letter_id, and there is one dead letter.
// Concurrent deliveries of one id are written once.
func TestRefusedRedelivery(t *testing.T) {
	f := newFixture(t, nil, Config{})
	bad := `{"type": "review.upserted", `
	code, first, _ := f.send(t, delivery{id: "bad-1", body: bad})
	id, _ := first["dead_letter_id"].(string)
	if code != http.StatusBadRequest || !strings.HasPrefix(id, "dlq_") || first["error"] == "" {
		t.Fatalf("got %d %v, want 400 with error and dead_letter_id", code, first)
	}
	code, again, _ := f.send(t, delivery{id: "bad-1", body: bad, ts: time.Now().Add(time.Second)})
	if code != http.StatusBadRequest || fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("redelivery got %d %v, want the same 400 %v", code, again, first)
	}

	var wg sync.WaitGroup
	answers := make([]string, 5)
	for i := range answers {
		wg.Go(func() {
			code, out, _ := f.send(t, delivery{id: "bad-2", body: bad + strconv.Itoa(0)})
			answers[i] = fmt.Sprintf("%d %v", code, out["dead_letter_id"])
		})
	}
	wg.Wait()
	for _, a := range answers[1:] {
		if a != answers[0] || !strings.HasPrefix(a, "400 dlq_") {
			t.Fatalf("concurrent redeliveries answered %v, want one 400 with its dead letter", answers)
		}
	}
	var mu sync.Mutex
	statuses := map[any]int{}
	for range 5 {
		wg.Go(func() {
			code, out, _ := f.send(t, delivery{id: "good-1", body: event("g1", 1)})
			mu.Lock()
			defer mu.Unlock()
			statuses[fmt.Sprint(code, " ", out["status"])]++
		})
	}
	wg.Wait()
	if statuses["200 accepted"] != 1 || statuses["200 duplicate"] != 4 {
		t.Fatalf("concurrent deliveries of one id answered %v, want 1 accepted and 4 duplicates", statuses)
	}

	dls := records(t, f.stack, kafkax.TopicDLQ)
	if len(dls) != 2 {
		t.Fatalf("%d dead letters, want one per refused delivery (2)", len(dls))
	}
	var dl envelope.DeadLetter
	for _, m := range dls {
		if err := json.Unmarshal(m.Value, &dl); err != nil {
			t.Fatal(err)
		}
		if dl.Headers["webhook-id"] == "bad-1" && dl.ID != id {
			t.Fatalf("dead letter id %s, answered %s", dl.ID, id)
		}
	}
	if raw := records(t, f.stack, kafkax.TopicRaw); len(raw) != 1 {
		t.Fatalf("%d raw records, want the accepted delivery's one", len(raw))
	}
}

func TestWebhookIDs(t *testing.T) {
	ids := newWebhookIDs(2)
	refusal := &answer{code: 400, msg: "not JSON", deadLetterID: "dlq_1"}
	for _, k := range []string{"a", "b"} {
		if _, known, wait := ids.claim(k); known || wait != nil {
			t.Fatalf("%s: known or waiting before any delivery", k)
		}
	}
	if _, _, wait := ids.claim("a"); wait == nil {
		t.Fatal("a second delivery of a while the first runs does not wait")
	}
	ids.done("a", true, nil)
	ids.done("b", true, refusal)
	if e, known, _ := ids.claim("b"); !known || e.refusal != refusal {
		t.Fatalf("b: %v %v, want its refusal", known, e.refusal)
	}
	if e, known, _ := ids.claim("a"); !known || e.refusal != nil {
		t.Fatalf("a: %v %v, want accepted", known, e.refusal)
	}
	// c pushes out the least recently used (b: a was just looked at).
	ids.claim("c")
	ids.done("c", true, nil)
	if _, known, _ := ids.claim("b"); known {
		t.Fatal("b is still remembered past the bound")
	}
	ids.done("b", false, nil) // a 503: not remembered
	if _, known, wait := ids.claim("b"); known || wait != nil {
		t.Fatal("a non-final answer was remembered")
	}
}

func TestConfigValidate(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.BodyTimeout != 10*time.Second || c.MaxPendingBytes != 64<<20 || c.MaxInFlight != 256 || c.MaxBody != 1<<20 {
		t.Fatalf("defaults %+v", c)
	}
	for _, bad := range []Config{
		{MaxBody: 1 << 20, MaxPendingBytes: 2<<20 - 1},
		{MaxBody: kafkax.MaxBodyLimit + 1},
		{MaxBody: 1023},
		{BodyTimeout: -time.Second},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := (&Config{MaxBody: 1 << 20, MaxPendingBytes: 2 << 20}).Validate(); err != nil {
		t.Errorf("twice the body refused: %v", err)
	}
}
