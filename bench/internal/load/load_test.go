package load

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

// The benchmark's deliveries must be what the receiver and processor
// accept, or it measures error paths: every generated review splits and
// normalizes with the generic adapter, and the signature verifies.
func TestBodyIsAValidGenericDelivery(t *testing.T) {
	g, ok := provider.Default().Get("generic")
	if !ok {
		t.Fatal("no generic adapter")
	}
	now := time.Now()
	for _, k := range []int{1, 10} {
		body, ids := Body("t", 3, k, now)
		changes, err := g.Split(body)
		if err != nil {
			t.Fatalf("k=%d: split: %v\n%s", k, err, body)
		}
		if len(changes) != k || len(ids) != k {
			t.Fatalf("k=%d: %d changes, %d ids", k, len(changes), len(ids))
		}
		seen := map[string]bool{}
		for i, c := range changes {
			ev, err := g.Normalize(c.Payload, now)
			if err != nil {
				t.Fatalf("k=%d: normalize: %v", k, err)
			}
			if ev.Review.ID != ids[i] || seen[ids[i]] {
				t.Errorf("k=%d: review %d has id %q, want unique %q", k, i, ev.Review.ID, ids[i])
			}
			seen[ids[i]] = true
			if ev.Review.MovieID == "" || ev.Review.Rating == nil {
				t.Errorf("k=%d: review %s lacks movie or rating: %+v", k, ids[i], ev.Review)
			}
		}
		key := []byte("k")
		h := http.Header{}
		webhook.SetHeaders(h, key, "d1", now, body)
		if _, err := (webhook.Verifier{Keys: [][]byte{key}}).Verify(h, body); err != nil {
			t.Errorf("k=%d: signature: %v", k, err)
		}
	}
}

func TestQuantileAndSlope(t *testing.T) {
	v := make([]float64, 1000)
	for i := range v {
		v[i] = float64(i + 1)
	}
	for _, c := range []struct{ q, want float64 }{{.5, 500}, {.99, 990}, {.999, 999}, {1, 1000}} {
		if got := Quantile(v, c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	ps := []Point{{0, 0}, {0.5, 10}, {1, 100}, {2, 1100}, {3, 2100}, {3.5, 2100}}
	if got := slope(ps, 1, 3); got != 1000 {
		t.Errorf("slope = %v, want 1000", got)
	}
	s := Summarize([]Sample{{Latency: time.Millisecond, Code: 200}, {Latency: 3 * time.Millisecond, Code: 503}})
	if s.OK != 1 || s.Codes["503"] != 1 || s.Max != 3 {
		t.Errorf("Summarize = %+v", s)
	}
}

// The generator's own client speaks HTTP/1.1 well enough for the real
// servers: keep-alive reuse, bodies, headers, and a server that closes.
func TestClient(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Close") != "" {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(200 + len(b))
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, r.Header.Get("Webhook-Id"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c, err := NewClient(srv.URL, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 5 {
		code, err := c.Do(http.MethodPost, "/webhooks/generic", http.Header{"Webhook-Id": {"m"}}, []byte("abc"))
		if err != nil || code != 203 {
			t.Fatalf("request %d: %d, %v", i, code, err)
		}
	}
	if code, err := c.Do(http.MethodGet, "/v1/x", nil, nil); err != nil || code != 200 {
		t.Fatalf("get: %d, %v", code, err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 6 sequential requests, want 1 kept alive", n)
	}
	if code, err := c.Do(http.MethodGet, "/", http.Header{"X-Close": {"1"}}, nil); err != nil || code != 200 {
		t.Fatalf("closing request: %d, %v", code, err)
	}
	if code, err := c.Do(http.MethodGet, "/", nil, nil); err != nil || code != 200 {
		t.Fatalf("after the server closed: %d, %v", code, err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want a new one after the server closed the first", n)
	}
	srv.CloseClientConnections() // as an idle timeout would
	if code, err := c.Do(http.MethodGet, "/", nil, nil); err != nil || code != 200 {
		t.Fatalf("after the server dropped an idle connection: %d, %v", code, err)
	}
	if _, err := NewClient("https://x", 1); err == nil {
		t.Fatal("an https URL was accepted")
	}
}
