package obs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func do(t *testing.T, h http.Handler, path, auth string) (int, http.Header, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Header(), rec.Body.Bytes()
}

// docs/contract.md §8: with OPS_TOKEN set, /metrics answers 401 without the bearer
// token or with a wrong one, 200 with it; /healthz and /readyz stay public.
func TestMetricsNeedTheOpsToken(t *testing.T) {
	const token = "s3cret-ops-token"
	mux := http.NewServeMux()
	MountWith(mux, NewRegistry(), &Health{}, MountConfig{OpsToken: token})
	for _, tc := range []struct {
		name, auth string
		code       int
		says       string
	}{
		{"no header", "", 401, "needs the operator token"},
		{"another scheme", "Basic " + token, 401, "needs the operator token"},
		{"empty bearer", "Bearer ", 401, "needs the operator token"},
		{"wrong token", "Bearer s3cret-ops-tokeN", 401, "wrong"},
		{"a prefix of it", "Bearer s3cret", 401, "wrong"},
		{"the token", "Bearer " + token, 200, ""},
		{"scheme in any case", "bearer " + token, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, b := do(t, mux, "/metrics", tc.auth)
			if code != tc.code {
				t.Fatalf("%d, want %d: %s", code, tc.code, b)
			}
			if code == 200 {
				if !bytes.Contains(b, []byte("go_goroutines")) {
					t.Fatalf("no metrics in the answer: %.200s", b)
				}
				return
			}
			var e map[string]string
			if err := json.Unmarshal(b, &e); err != nil || !strings.Contains(e["error"], tc.says) {
				t.Fatalf("error %q (%v), want it to say %q", b, err, tc.says)
			}
			if h.Get("WWW-Authenticate") == "" || h.Get("Content-Type") != "application/json" {
				t.Fatalf("headers %v", h)
			}
			if bytes.Contains(b, []byte(token)) {
				t.Fatal("the answer carries the token")
			}
		})
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _, b := do(t, mux, path, ""); code != 200 {
			t.Errorf("%s without a token: %d %s, want 200", path, code, b)
		}
	}
	// No token configured: /metrics is public.
	open := http.NewServeMux()
	Mount(open, NewRegistry(), &Health{})
	if code, _, _ := do(t, open, "/metrics", ""); code != 200 {
		t.Fatalf("without OPS_TOKEN, /metrics answered %d", code)
	}
}

// docs/contract.md §8: /readyz says only "ok" or "down" per check; the error's
// text (broker addresses) goes to the log, once while it stays the same.
func TestReadyzCarriesNoErrorText(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	h := &Health{}
	secret := errors.New("dial tcp 10.9.8.7:9092: connect: connection refused (user=admin password=hunter2)")
	h.Add("kafka", func(context.Context) error { return secret })
	h.Add("postgres", func(context.Context) error { return nil })
	mux := http.NewServeMux()
	MountWith(mux, prometheus.NewRegistry(), h, MountConfig{Log: zap.New(core)})
	for range 3 {
		code, hdr, b := do(t, mux, "/readyz", "")
		if code != http.StatusServiceUnavailable {
			t.Fatalf("%d, want 503", code)
		}
		var got struct {
			Ready  bool              `json:"ready"`
			Checks map[string]string `json:"checks"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.Ready || got.Checks["kafka"] != CheckDown || got.Checks["postgres"] != CheckOK || len(got.Checks) != 2 {
			t.Fatalf("answer %s", b)
		}
		for _, leak := range []string{"10.9.8.7", "9092", "hunter2", "refused"} {
			if bytes.Contains(b, []byte(leak)) {
				t.Fatalf("the public answer carries %q: %s", leak, b)
			}
		}
		if hdr.Get("Cache-Control") != "no-store" {
			t.Fatalf("Cache-Control %q", hdr.Get("Cache-Control"))
		}
	}
	warned := logs.FilterMessage("readiness check fails").All()
	if len(warned) != 1 || !strings.Contains(warned[0].ContextMap()["error"].(string), "10.9.8.7:9092") {
		t.Fatalf("log: %v, want the detail once", warned)
	}
}

// Every server has a write timeout: a client that stops reading an
// ordinary answer holds its connection no longer than WriteTimeout, while a
// handler may extend its own deadline (event streams) and set its own read
// deadline (the receiver) with http.ResponseController.
func TestServerWriteTimeout(t *testing.T) {
	written := make(chan error, 1)
	readDeadline := make(chan error, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 1024 { // 64 MiB: far more than the sockets buffer
			if _, err := w.Write(chunk); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	})
	mux.HandleFunc("/extended", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		readDeadline <- rc.SetReadDeadline(time.Now().Add(time.Minute))
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Error(err)
		}
		_, _ = io.WriteString(w, "ok")
	})
	srv, err := ListenWith("127.0.0.1:0", mux, ServerConfig{WriteTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })

	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The client reads nothing.
	select {
	case err := <-written:
		if err == nil {
			t.Fatal("64 MiB written to a client that reads nothing")
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("the write failed after %s, want about the 500ms write timeout", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a client that reads nothing holds the handler past the write timeout")
	}

	res, err := http.Get("http://" + srv.Addr() + "/extended")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("extended handler answered %q", b)
	}
	if err := <-readDeadline; err != nil {
		t.Fatalf("a handler cannot set its own read deadline: %v", err)
	}
}

func TestServerConfigValidate(t *testing.T) {
	var c ServerConfig
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.WriteTimeout != 30*time.Second || c.ReadTimeout != 30*time.Second || c.IdleTimeout != 120*time.Second || c.ReadHeaderTimeout != 5*time.Second {
		t.Fatalf("defaults %+v", c)
	}
	if err := (&ServerConfig{WriteTimeout: -1}).Validate(); err == nil {
		t.Fatal("a negative timeout was accepted")
	}
}
