package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/webhooks"
)

// The simulator's webhooks, for all three providers, are accepted by the
// real receiver (signatures, shapes) and land in the real Kafka's raw topic,
// one record per change keyed {provider}:{review_id}, with payloads that
// normalize to the simulator's truth. The receiver starts only after the
// deliveries were queued, so they succeed by retrying.
func TestWebhooksReachTheRealReceiver(t *testing.T) {
	st := testenv.New(t)
	bin := testenv.Binary(t, "receiver")
	addr := testenv.FreeAddr(t)

	reg := prometheus.NewRegistry()
	snd, err := webhooks.New(webhooks.Config{ReceiverURL: "http://" + addr, Keys: signingKeys,
		Base: 50 * time.Millisecond, Cap: 500 * time.Millisecond}, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{APIKey: apiKey}, snd, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = snd.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	movie := "tt0000070"
	mux := http.NewServeMux()
	a.Routes(mux)
	sim := &testSim{app: a}
	srv := newServer(t, mux)
	sim.url = srv
	for _, p := range []string{"generic", "cinescore", "reelpulse"} {
		sim.change(t, p, "upsert", data("a", movie), true)
	}
	sim.change(t, "reelpulse", "delete", provider.GenericData{ReviewID: "a"}, true)
	truth := sim.truth(t, movie)

	env := append(st.Env(), "RECEIVER_ADDR="+addr, "LOG_LEVEL=warn")
	for p, k := range signingKeys {
		env = append(env, config.SecretVar(p)+"="+webhook.FormatSecret(k))
	}
	testenv.Spawn(t, "receiver", bin, env...)

	testenv.Eventually(t, 60*time.Second, func() error {
		var acked, failed int64
		for _, s := range snd.Stats() {
			acked, failed = acked+s.Acked, failed+s.Failed
		}
		if failed > 0 {
			t.Fatalf("a delivery was given up: %+v", snd.Stats())
		}
		if acked != 4 {
			return fmt.Errorf("%d of 4 deliveries acked: %+v", acked, snd.Stats())
		}
		return nil
	})
	for p, s := range snd.Stats() {
		if s.Attempts < 2 {
			t.Errorf("%s: %d attempts; the first should have failed while the receiver was not up", p, s.Attempts)
		}
	}

	recs := readAll(t, st.Brokers, st.Topic(kafkax.TopicRaw))
	var keys []string
	hashes := map[string]string{}
	for _, m := range recs {
		raw, err := envelope.ParseRaw(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if raw.Source != envelope.SourceWebhook {
			t.Errorf("source %s", raw.Source)
		}
		ad, _ := provider.Default().Get(raw.Provider)
		ev, err := ad.Normalize(raw.Payload, time.Time{})
		if err != nil {
			t.Fatalf("raw payload does not normalize: %v", err)
		}
		if string(m.Key) != ev.Review.ID {
			t.Errorf("record key %s, normalized id %s", m.Key, ev.Review.ID)
		}
		keys = append(keys, fmt.Sprintf("%s@%d:%s", m.Key, ev.Review.Version, ev.Op))
		if ev.Op == review.OpUpsert {
			hashes[ev.Review.ID] = review.ContentHash(ev.Op, ev.Review)
		}
	}
	sort.Strings(keys)
	if got := strings.Join(keys, " "); got != "cinescore:a@1:upsert generic:a@1:upsert reelpulse:a@1:upsert reelpulse:a@2:delete" {
		t.Fatalf("raw records %s", got)
	}
	if len(truth) != 2 {
		t.Fatalf("truth %+v", truth)
	}
	for _, r := range truth {
		if hashes[r.ID] != review.ContentHash(review.OpUpsert, r) {
			t.Errorf("%s: the pipeline's input differs from the truth", r.ID)
		}
	}
}

func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv, err := obs.Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return "http://" + srv.Addr()
}

// readAll reads every record now in topic, from every partition.
func readAll(t *testing.T, brokers []string, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	var out []kafka.Message
	for _, p := range parts {
		lc, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := lc.ReadOffsets()
		if err != nil {
			t.Fatal(err)
		}
		if last > first {
			if _, err := lc.Seek(first, kafka.SeekAbsolute); err != nil {
				t.Fatal(err)
			}
			_ = lc.SetReadDeadline(time.Now().Add(10 * time.Second))
			b := lc.ReadBatch(1, 10<<20)
			for off := first; off < last; off++ {
				m, err := b.ReadMessage()
				if err != nil {
					t.Fatalf("partition %d offset %d: %v", p.ID, off, err)
				}
				out = append(out, m)
			}
			b.Close()
		}
		lc.Close()
	}
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}
