// Package obs sets up what every service exposes to operators: a zap
// logger, a Prometheus registry with Go and process collectors, /metrics
// (behind the operator token when one is set), /healthz and /readyz on a
// mux, and an HTTP server with read, write and idle timeouts.
package obs

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// NewLogger returns a JSON logger at level ("debug", "info", "warn", "error")
// naming the service in every line.
func NewLogger(service, level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("LOG_LEVEL=%q: %w", level, err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.TimeKey = "ts"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.Sampling = nil
	log, err := cfg.Build()
	if err != nil {
		return nil, err
	}
	return log.With(zap.String("service", service)), nil
}

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Check is one readiness check: nil when the dependency answers.
type Check func(ctx context.Context) error

// KafkaCheck is a readiness check: a metadata request to brokers answers.
func KafkaCheck(brokers []string) Check {
	return func(ctx context.Context) error { _, err := kafkax.Ping(ctx, brokers); return err }
}

// PostgresCheck is a readiness check: db answers a ping.
func PostgresCheck(db interface{ Ping(context.Context) error }) Check {
	return db.Ping
}

// Health tracks readiness checks. Safe for concurrent use.
type Health struct {
	mu     sync.Mutex
	checks map[string]Check
	logged map[string]loggedFailure
}

// Add registers a named readiness check.
func (h *Health) Add(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checks == nil {
		h.checks = map[string]Check{}
	}
	h.checks[name] = c
}

// Run runs every check with a 2s deadline and returns each one's error
// (nil when it answered) and whether all answered. The errors are for the
// log: they may name addresses and must not reach a public answer.
func (h *Health) Run(ctx context.Context) (map[string]error, bool) {
	h.mu.Lock()
	checks := make(map[string]Check, len(h.checks))
	for k, v := range h.checks {
		checks[k] = v
	}
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out := make(map[string]error, len(checks))
	ok := true
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, c := range checks {
		wg.Go(func() {
			err := c(ctx)
			mu.Lock()
			defer mu.Unlock()
			out[name] = err
			if err != nil {
				ok = false
			}
		})
	}
	wg.Wait()
	return out, ok
}

// logFailures logs each failing check's detail when its error changes, and
// at most once a minute while it stays the same, so a probe polling /readyz
// does not flood the log.
func (h *Health) logFailures(log *zap.Logger, res map[string]error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.logged == nil {
		h.logged = map[string]loggedFailure{}
	}
	for name, err := range res {
		if err == nil {
			if _, was := h.logged[name]; was {
				log.Info("readiness check passes again", zap.String("check", name))
				delete(h.logged, name)
			}
			continue
		}
		prev, was := h.logged[name]
		if was && prev.msg == err.Error() && now.Sub(prev.at) < time.Minute {
			continue
		}
		log.Warn("readiness check fails", zap.String("check", name), zap.Error(err))
		h.logged[name] = loggedFailure{msg: err.Error(), at: now}
	}
}

type loggedFailure struct {
	msg string
	at  time.Time
}

// What /readyz says of each check: nothing more, since the answer is
// public (docs/contract.md §8).
const (
	CheckOK   = "ok"
	CheckDown = "down"
)

// MountConfig configures MountWith.
type MountConfig struct {
	// OpsToken, when not empty, is required on /metrics as
	// "Authorization: Bearer <OpsToken>" (RequireToken).
	OpsToken string
	// Log receives the detail of failing readiness checks (nil: none).
	Log *zap.Logger
}

// Mount adds /metrics, /healthz and /readyz to mux with a zero MountConfig:
// no token on /metrics, no log of failing checks.
func Mount(mux *http.ServeMux, reg *prometheus.Registry, h *Health) {
	MountWith(mux, reg, h, MountConfig{})
}

// MountWith adds /metrics (behind cfg.OpsToken when set), /healthz and
// /readyz to mux. /readyz answers 200 or 503 with {"ready", "checks":
// {name: "ok" or "down"}}; why a check is down goes to cfg.Log only, since
// error text can carry broker addresses or credentials.
func MountWith(mux *http.ServeMux, reg *prometheus.Registry, h *Health, cfg MountConfig) {
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	mux.Handle("GET /metrics", RequireToken(cfg.OpsToken, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		res, ok := h.Run(r.Context())
		h.logFailures(log, res, time.Now())
		checks := make(map[string]string, len(res))
		for name, err := range res {
			checks[name] = CheckOK
			if err != nil {
				checks[name] = CheckDown
			}
		}
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Cache-Control", "no-store")
		WriteJSON(w, code, map[string]any{"ready": ok, "checks": checks})
	})
}

// RequireToken returns next behind a bearer token: when token is not empty,
// a request without "Authorization: Bearer <token>" is answered 401 with a
// JSON error (saying whether the token was missing or wrong) and
// WWW-Authenticate, and never reaches next. The comparison takes the same
// time whatever was sent (crypto/subtle over SHA-256 digests, so not even
// the length shows). An empty token returns next unchanged.
func RequireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if msg, ok := checkBearer(r, want); !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="reviewpipe operator"`)
			w.Header().Set("Cache-Control", "no-store")
			WriteError(w, http.StatusUnauthorized, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func checkBearer(r *http.Request, want [sha256.Size]byte) (string, bool) {
	scheme, cred, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(cred) == "" {
		return "this operator endpoint needs the operator token: send Authorization: Bearer $OPS_TOKEN", false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return "the bearer token is wrong: send the OPS_TOKEN the services run with (make run writes it to .run/env)", false
	}
	return "", true
}

// WriteJSON writes v as a JSON answer with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// StatusRecorder wraps a ResponseWriter and keeps the status of the answer
// (200 when the handler writes a body without WriteHeader), for metrics.
type StatusRecorder struct {
	http.ResponseWriter
	Status int
}

func (s *StatusRecorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// WriteError writes {"error": msg} with the given status.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, map[string]string{"error": msg})
}

// Server is an HTTP server with timeouts against slow clients.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// ServerConfig holds a server's timeouts. Zero values take the defaults
// noted.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading a request's headers (5s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included (30s). A
	// handler may set its own with http.ResponseController.SetReadDeadline.
	ReadTimeout time.Duration
	// WriteTimeout bounds an answer, from the end of the request's headers
	// to the last byte written (30s), so a client that stops reading cannot
	// hold a connection. Long-lived answers (event streams) extend it per
	// write with http.ResponseController.SetWriteDeadline.
	WriteTimeout time.Duration
	// IdleTimeout bounds a kept-alive connection between requests (120s).
	IdleTimeout time.Duration
}

// Validate fills defaults and checks the config.
func (c *ServerConfig) Validate() error {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.ReadHeaderTimeout, 5 * time.Second}, {&c.ReadTimeout, 30 * time.Second},
		{&c.WriteTimeout, 30 * time.Second}, {&c.IdleTimeout, 120 * time.Second}} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return fmt.Errorf("server timeouts must be positive, got %s", *d.v)
		}
	}
	return nil
}

// Listen binds addr and returns a server for handler with the default
// ServerConfig. The caller runs Serve and Shutdown.
func Listen(addr string, handler http.Handler) (*Server, error) {
	return ListenWith(addr, handler, ServerConfig{})
}

// ListenWith binds addr and returns a server for handler with cfg's
// timeouts. The caller runs Serve and Shutdown.
func ListenWith(addr string, handler http.Handler, cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return &Server{ln: ln, srv: &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}}, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve blocks until Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting and waits for in-flight requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
