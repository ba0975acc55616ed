package webhooks

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

var key = []byte("test-signing-key")

type attempt struct {
	id, path string
	body     []byte
	err      error
}

// receiver answers the first fail attempts with 503, then 204, verifying
// every signature as the real receiver does.
type receiver struct {
	mu       sync.Mutex
	fail     int
	attempts []attempt
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, err := webhook.Verifier{Keys: [][]byte{key}}.Verify(r.Header, body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.attempts = append(rc.attempts, attempt{id: r.Header.Get(webhook.HeaderID), path: r.URL.Path, body: body, err: err})
	if err != nil || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, `{"error":"bad signature"}`, http.StatusUnauthorized)
		return
	}
	_ = id
	if len(rc.attempts) <= rc.fail {
		http.Error(w, `{"error":"busy"}`, http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) snapshot() []attempt {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]attempt(nil), rc.attempts...)
}

func start(t *testing.T, cfg Config) *Sender {
	t.Helper()
	s, err := New(cfg, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRetriesUntilAcked(t *testing.T) {
	rc := &receiver{fail: 2}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s := start(t, Config{ReceiverURL: srv.URL, Keys: map[string][]byte{"cinescore": key}, Base: 20 * time.Millisecond, Cap: 80 * time.Millisecond})
	body := []byte(`{"notifications":[]}`)
	if err := s.Enqueue("cinescore", "msg_1", body); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delivery to be acked", func() bool { return s.Stats()["cinescore"].Acked == 1 })
	got := rc.snapshot()
	if len(got) != 3 {
		t.Fatalf("%d attempts, want 3 (two 503s, then success)", len(got))
	}
	for i, a := range got {
		if a.err != nil || a.id != "msg_1" || a.path != "/webhooks/cinescore" || string(a.body) != string(body) {
			t.Fatalf("attempt %d: %+v", i, a)
		}
	}
	st := s.Stats()["cinescore"]
	if st != (Stats{Queued: 0, Sent: 1, Acked: 1, Failed: 0, Attempts: 3}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestGivesUpAfterDeadline(t *testing.T) {
	rc := &receiver{fail: 1 << 30}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s := start(t, Config{ReceiverURL: srv.URL, Keys: map[string][]byte{"generic": key},
		Base: 10 * time.Millisecond, Cap: 40 * time.Millisecond, GiveUp: 300 * time.Millisecond})
	t0 := time.Now()
	if err := s.Enqueue("generic", "msg_2", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delivery to be given up", func() bool { return s.Stats()["generic"].Failed == 1 })
	if el := time.Since(t0); el > 2*time.Second {
		t.Fatalf("gave up after %v, want about 300ms", el)
	}
	st := s.Stats()["generic"]
	if st.Attempts < 3 || st.Queued != 0 || st.Acked != 0 || int(st.Attempts) != len(rc.snapshot()) {
		t.Fatalf("stats %+v, %d attempts seen", st, len(rc.snapshot()))
	}
}

func TestRetriesNetworkErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused until the receiver starts
	s := start(t, Config{ReceiverURL: "http://" + addr, Keys: map[string][]byte{"reelpulse": key},
		Base: 20 * time.Millisecond, Cap: 50 * time.Millisecond})
	if err := s.Enqueue("reelpulse", "msg_3", []byte(`[]`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a failed attempt", func() bool { return s.Stats()["reelpulse"].Attempts >= 2 })
	rc := &receiver{}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: rc}}
	srv.Start()
	defer srv.Close()
	eventually(t, "the delivery to be acked", func() bool { return s.Stats()["reelpulse"].Acked == 1 })
}

func TestEnqueueErrors(t *testing.T) {
	s, err := New(Config{ReceiverURL: "http://127.0.0.1:1", Keys: map[string][]byte{"generic": key}, MaxQueued: 1},
		zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue("cinescore", "m", nil); err != ErrNoKey {
		t.Fatalf("no key: %v", err)
	}
	if err := s.Enqueue("generic", "m1", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue("generic", "m2", nil); err != ErrQueueFull {
		t.Fatalf("full: %v", err)
	}
	if _, err := New(Config{ReceiverURL: "127.0.0.1:8081"}, zap.NewNop(), prometheus.NewRegistry()); err == nil {
		t.Fatal("a receiver URL without scheme is accepted")
	}
}
