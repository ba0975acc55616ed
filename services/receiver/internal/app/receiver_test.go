package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

var (
	key1 = []byte("receiver-test-key-one")
	key2 = []byte("receiver-test-key-two")
)

func event(id string, version int) string {
	return `{"type":"review.upserted","data":{"review_id":"` + id + `","version":` + itoa(version) +
		`,"updated_at":"2026-11-20T10:00:00Z","movie":{"imdb_id":"tt0111161","title":"The Shawshank Redemption"},"rating":{"value":8,"scale":10}}}`
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

type fixture struct {
	stack *testenv.Stack
	url   string
	rc    *Receiver
	reg   *prometheus.Registry
}

func newFixture(t *testing.T, brokers []string, cfg Config) *fixture {
	t.Helper()
	return newFixtureWith(t, fixtureOpts{brokers: brokers, cfg: cfg})
}

// fixtureOpts configures newFixtureWith; zero values take newFixture's.
type fixtureOpts struct {
	brokers []string
	cfg     Config
	// writer tunes both Kafka writers (Brokers and Topic are set here).
	writer kafkax.WriterConfig
	// now replaces the receiver's clock.
	now func() time.Time
	// hung points the writers at a hungBroker instead of brokers.
	hung bool
}

// newFixtureWith serves a receiver on 127.0.0.1 with the server every
// service runs (obs.ListenWith: its read, write and idle timeouts).
func newFixtureWith(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	st := testenv.New(t)
	switch {
	case o.hung:
		o.brokers = []string{hungBroker(t, st.Topic(kafkax.TopicRaw), st.Topic(kafkax.TopicDLQ))}
	case o.brokers == nil:
		o.brokers = st.Brokers
	}
	wc := o.writer
	wc.Brokers, wc.Topic = o.brokers, st.Topic(kafkax.TopicRaw)
	if wc.MaxAttempts == 0 {
		wc.MaxAttempts = 3
	}
	raw := kafkax.NewWriter(wc)
	wc.Topic = st.Topic(kafkax.TopicDLQ)
	dlq := kafkax.NewWriter(wc)
	t.Cleanup(func() { raw.Close(); dlq.Close() })
	cfg := o.cfg
	if cfg.Keys == nil {
		cfg.Keys = map[string][][]byte{"generic": {key1, key2}}
	}
	reg := prometheus.NewRegistry()
	rc, err := New(cfg, provider.Default(), raw, dlq, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	if o.now != nil {
		rc.now = o.now
	}
	mux := http.NewServeMux()
	rc.Routes(mux)
	srv, err := obs.ListenWith("127.0.0.1:0", mux, obs.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &fixture{stack: st, url: "http://" + srv.Addr(), rc: rc, reg: reg}
}

type delivery struct {
	provider    string
	id          string
	body        string
	key         []byte
	ts          time.Time
	contentType string
	edit        func(http.Header)
}

func (f *fixture) send(t *testing.T, d delivery) (int, map[string]any, http.Header) {
	t.Helper()
	if d.provider == "" {
		d.provider = "generic"
	}
	if d.ts.IsZero() {
		d.ts = time.Now()
	}
	if d.contentType == "" {
		d.contentType = "application/json"
	}
	if d.key == nil {
		d.key = key1
	}
	req, _ := http.NewRequest(http.MethodPost, f.url+"/webhooks/"+d.provider, strings.NewReader(d.body))
	req.Header.Set("Content-Type", d.contentType)
	webhook.SetHeaders(req.Header, d.key, d.id, d.ts, []byte(d.body))
	if d.edit != nil {
		d.edit(req.Header)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer %d is not JSON: %q", res.StatusCode, b)
	}
	return res.StatusCode, out, res.Header
}

// records reads every record now in topic (all partitions).
func records(t *testing.T, st *testenv.Stack, topic kafkax.Topic) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", st.Brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(st.Topic(topic))
	if err != nil {
		t.Fatal(err)
	}
	var out []kafka.Message
	for _, p := range parts {
		pc, err := kafka.DialLeader(ctx, "tcp", st.Brokers[0], p.Topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, err := pc.ReadLastOffset()
		pc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: st.Brokers, Topic: p.Topic, Partition: p.ID, MaxWait: 100 * time.Millisecond})
		for n := int64(0); n < last; n++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read %s/%d: %v", p.Topic, p.ID, err)
			}
			out = append(out, m)
		}
		r.Close()
	}
	return out
}

func TestSignatureMatrix(t *testing.T) {
	f := newFixture(t, nil, Config{})
	body := event("sig-1", 1)
	var reserialized bytes.Buffer
	_ = json.Compact(&reserialized, []byte(body))
	reserialized.WriteString(" ")
	cases := []struct {
		name string
		d    delivery
		want int
	}{
		{"tampered body", delivery{id: "m1", body: body, edit: nil}, 0},
		{"wrong secret", delivery{id: "m2", body: body, key: []byte("not-the-secret")}, 401},
		{"missing webhook-id", delivery{id: "m3", body: body, edit: func(h http.Header) { h.Del(webhook.HeaderID) }}, 401},
		{"missing webhook-timestamp", delivery{id: "m4", body: body, edit: func(h http.Header) { h.Del(webhook.HeaderTimestamp) }}, 401},
		{"missing webhook-signature", delivery{id: "m5", body: body, edit: func(h http.Header) { h.Del(webhook.HeaderSignature) }}, 401},
		{"timestamp 6 minutes old", delivery{id: "m6", body: body, ts: time.Now().Add(-6 * time.Minute)}, 401},
		{"timestamp 6 minutes ahead", delivery{id: "m7", body: body, ts: time.Now().Add(6 * time.Minute)}, 401},
		{"v2 signature", delivery{id: "m8", body: body, edit: func(h http.Header) {
			h.Set(webhook.HeaderSignature, "v2,"+strings.TrimPrefix(h.Get(webhook.HeaderSignature), "v1,"))
		}}, 401},
	}
	// A tampered body: signed over body, sent with one byte changed.
	cases[0].d.edit = func(h http.Header) {
		h.Set(webhook.HeaderSignature, webhook.Sign(key1, "m1", time.Now(), []byte(event("sig-1", 2))))
	}
	cases[0].want = 401
	for _, c := range cases {
		code, out, _ := f.send(t, c.d)
		if code != c.want {
			t.Errorf("%s: got %d %v, want %d", c.name, code, out, c.want)
		}
		if code >= 400 && out["error"] == "" {
			t.Errorf("%s: error answer without a reason: %v", c.name, out)
		}
	}
	if got := records(t, f.stack, kafkax.TopicRaw); len(got) != 0 {
		t.Fatalf("%d records reached Kafka from rejected deliveries", len(got))
	}

	// Accepted: the first key, the second key of two (rotation), and the
	// same JSON re-serialized (signed as sent: the bytes are what count).
	for i, d := range []delivery{
		{id: "ok1", body: body, key: key1},
		{id: "ok2", body: event("sig-2", 1), key: key2},
		{id: "ok3", body: reserialized.String(), key: key1},
	} {
		if code, out, _ := f.send(t, d); code != http.StatusOK {
			t.Fatalf("valid delivery %d: got %d %v", i, code, out)
		}
	}
	got := records(t, f.stack, kafkax.TopicRaw)
	if len(got) != 3 {
		t.Fatalf("want 3 raw records, got %d", len(got))
	}
	for _, m := range got {
		raw, err := envelope.ParseRaw(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if raw.Source != envelope.SourceWebhook || raw.Provider != "generic" || !strings.HasPrefix(string(m.Key), "generic:sig-") {
			t.Errorf("unexpected raw record key=%s %+v", m.Key, raw)
		}
		if envelope.Header(m, kafkax.HeaderAccepted) == "" {
			t.Errorf("raw record without %s header", kafkax.HeaderAccepted)
		}
	}
}

func TestErrorAnswers(t *testing.T) {
	f := newFixture(t, nil, Config{MaxBody: 4096})
	big := `{"type":"review.upserted","data":{"review_id":"x","version":1,"updated_at":"2026-11-20T10:00:00Z","movie":{"imdb_id":"tt0111161","title":"t"},"body":"` +
		strings.Repeat("a", 5000) + `"}}`
	cases := []struct {
		name string
		d    delivery
		want int
	}{
		{"unknown provider", delivery{provider: "nosuch", id: "e1", body: event("a", 1)}, 404},
		{"wrong content type", delivery{id: "e2", body: event("a", 1), contentType: "text/plain"}, 415},
		{"body over limit", delivery{id: "e3", body: big}, 413},
		{"not JSON", delivery{id: "e4", body: `{"type": "review.upserted", `}, 400},
		{"unknown shape", delivery{id: "e5", body: `{"kind":"something"}`}, 400},
		{"invalid version", delivery{id: "e6", body: strings.Replace(event("a", 1), `"version":1`, `"version":0`, 1)}, 400},
	}
	for _, c := range cases {
		code, out, _ := f.send(t, c.d)
		if code != c.want {
			t.Errorf("%s: got %d %v, want %d", c.name, code, out, c.want)
		}
		if msg, _ := out["error"].(string); msg == "" {
			t.Errorf("%s: no error message: %v", c.name, out)
		}
	}
	if got := records(t, f.stack, kafkax.TopicRaw); len(got) != 0 {
		t.Fatalf("%d raw records from refused deliveries", len(got))
	}
	dl := records(t, f.stack, kafkax.TopicDLQ)
	if len(dl) != 3 {
		t.Fatalf("want the 3 signed-but-unusable bodies on the DLQ, got %d", len(dl))
	}
	reasons := map[string]bool{}
	for _, m := range dl {
		var d envelope.DeadLetter
		if err := json.Unmarshal(m.Value, &d); err != nil {
			t.Fatal(err)
		}
		if d.Stage != envelope.StageReceiver || d.Error == "" || len(d.RecordBytes()) == 0 {
			t.Errorf("dead letter incomplete: %+v", d)
		}
		reasons[d.Reason] = true
	}
	for _, r := range []string{"not_json", "unknown_shape", "invalid_field"} {
		if !reasons[r] {
			t.Errorf("no dead letter with reason %s (got %v)", r, reasons)
		}
	}
}

func TestRedeliveryAndBatch(t *testing.T) {
	f := newFixture(t, nil, Config{})
	batch := `{"events":[` + event("b1", 1) + `,` + event("b2", 1) + `,` + event("b3", 7) + `]}`
	for i := 0; i < 3; i++ {
		code, out, _ := f.send(t, delivery{id: "batch-1", body: batch})
		if code != http.StatusOK {
			t.Fatalf("delivery %d: %d %v", i, code, out)
		}
		if i > 0 && out["status"] != "duplicate" {
			t.Fatalf("redelivery %d answered %v, want status duplicate", i, out)
		}
	}
	got := records(t, f.stack, kafkax.TopicRaw)
	if len(got) != 3 {
		t.Fatalf("want 3 records (one per event, once), got %d", len(got))
	}
	keys := map[string]bool{}
	for _, m := range got {
		keys[string(m.Key)] = true
	}
	for _, k := range []string{"generic:b1", "generic:b2", "generic:b3"} {
		if !keys[k] {
			t.Errorf("no record keyed %s", k)
		}
	}
	over := `{"events":[` + strings.TrimSuffix(strings.Repeat(event("o", 1)+",", provider.MaxEventsPerDelivery+1), ",") + `]}`
	if code, out, _ := (&fixture{stack: f.stack, url: f.url}).send(t, delivery{id: "too-many", body: over}); code != 400 && code != 413 {
		t.Fatalf("501 events: got %d %v, want 400", code, out)
	}
}

func TestKafkaDownAnswers503(t *testing.T) {
	// A broker address where nothing listens: every write fails.
	f := newFixture(t, []string{testenv.FreeAddr(t)}, Config{KafkaDeadline: 1500 * time.Millisecond})
	start := time.Now()
	code, out, h := f.send(t, delivery{id: "down-1", body: event("d1", 1)})
	if code != http.StatusServiceUnavailable {
		t.Fatalf("got %d %v, want 503", code, out)
	}
	if h.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("503 took %s, want it within the deadline", d)
	}
}
