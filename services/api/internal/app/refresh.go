package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/time/rate"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/services/api/internal/store"
)

// RefreshAccepted is the answer of POST /v1/movies/{movie_id}/refresh.
type RefreshAccepted struct {
	RequestID   string    `json:"request_id"`
	MovieID     string    `json:"movie_id"`
	Status      string    `json:"status"`
	RequestedAt time.Time `json:"requested_at"`
	// Collapsed: an earlier request for this movie within the window
	// took this one in; RequestID is that request's.
	Collapsed bool `json:"collapsed"`
}

func (a *API) refresh(w http.ResponseWriter, r *http.Request) {
	movie, err := movieParam(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if wait, ok := a.limiter.allow(clientOf(r), a.now()); !ok {
		a.m.refreshes.WithLabelValues("rate_limited").Inc()
		a.fail(w, r, &httpError{status: http.StatusTooManyRequests, retryAfter: int(math.Ceil(wait.Seconds())),
			msg: fmt.Sprintf("too many refresh requests from this client; retry in %s", wait.Round(time.Second))})
		return
	}
	// The provider is never called here: the request is queued for the
	// poller, which spends its own rate budget on it.
	res, err := a.store.RequestRefresh(r.Context(), movie, newRequestID(), a.cfg.CollapseWindow, func(q store.Refresh) error {
		b, err := json.Marshal(envelope.SyncRequest{RequestID: q.RequestID, Kind: envelope.SyncRefresh, MovieID: movie,
			RequestedAt: q.RequestedAt, RequestedBy: "api"})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		defer cancel()
		if err := a.sync.WriteMessages(ctx, kafka.Message{Key: []byte(movie), Value: b}); err != nil {
			return &httpError{status: http.StatusServiceUnavailable, retryAfter: 5,
				msg: "could not queue the refresh request (Kafka unavailable); retry shortly"}
		}
		return nil
	})
	if err != nil {
		a.m.refreshes.WithLabelValues("failed").Inc()
		a.fail(w, r, err)
		return
	}
	outcome := "queued"
	if res.Collapsed {
		outcome = "collapsed"
	}
	a.m.refreshes.WithLabelValues(outcome).Inc()
	w.Header().Set("Cache-Control", "no-store")
	obs.WriteJSON(w, http.StatusAccepted, RefreshAccepted{RequestID: res.RequestID, MovieID: movie, Status: "queued",
		RequestedAt: res.RequestedAt, Collapsed: res.Collapsed})
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "rr_" + hex.EncodeToString(b)
}

// clientOf is the client's IP address (the connection's peer; a proxy in
// front would need its forwarded header trusted explicitly, which this
// service does not do).
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// clientLimiter is a token bucket per client, forgotten after a while
// idle. Safe for concurrent use.
type clientLimiter struct {
	mu      sync.Mutex
	rate    rate.Limit
	burst   int
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newClientLimiter(perSecond float64, burst int) *clientLimiter {
	return &clientLimiter{rate: rate.Limit(perSecond), burst: burst, buckets: map[string]*bucket{}}
}

// allow takes a token for client at now, or says how long until one is free.
func (l *clientLimiter) allow(client string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[client]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[client] = b
	}
	b.seen = now
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Hour, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}
