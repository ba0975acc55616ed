package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
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
	if wait, ok := a.limiter.allow(a.clientOf(r), a.now()); !ok {
		a.m.refreshes.WithLabelValues("rate_limited").Inc()
		a.fail(w, r, &httpError{status: http.StatusTooManyRequests, retryAfter: retryAfter(wait),
			msg: fmt.Sprintf("too many refresh requests from this client; retry in %s", wait.Round(time.Second))})
		return
	}
	// The provider is never called here: the request is queued for the
	// poller, which spends its own rate budget on it. No PostgreSQL
	// connection is held while Kafka is waited for: a slow Kafka must not
	// take the pool that reads need.
	now := a.now().UTC()
	res, found, err := a.store.RecentRefresh(r.Context(), movie, now, a.cfg.CollapseWindow)
	if err == nil && !found {
		res, err = a.flights.do(r.Context(), movie, func() (store.Refresh, error) { return a.queueRefresh(r, movie, now) })
	}
	if err != nil {
		var he *httpError
		if errors.As(err, &he) && he.status == http.StatusServiceUnavailable && he.msg == msgRefreshBusy {
			a.m.refreshes.WithLabelValues("global_limited").Inc()
		} else {
			a.m.refreshes.WithLabelValues("failed").Inc()
		}
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

const msgRefreshBusy = "too many refresh requests from all clients together; retry later"

// queueRefresh writes a new refresh request of movie to Kafka, then
// records it in PostgreSQL for the collapse of repeats (write, then record:
// the request id makes both idempotent). A request the global limit
// refuses, or that Kafka does not take within RefreshTimeout, is answered
// 503 and recorded nowhere. A request queued but not recorded (PostgreSQL
// failed in between) is still answered as queued: it is; only the collapse
// of its repeats is lost, and the poller merges duplicate refreshes.
func (a *API) queueRefresh(r *http.Request, movie string, now time.Time) (store.Refresh, error) {
	if wait, ok := a.takeGlobal(now); !ok {
		return store.Refresh{}, &httpError{status: http.StatusServiceUnavailable, retryAfter: retryAfter(wait), msg: msgRefreshBusy}
	}
	q := store.Refresh{RequestID: newRequestID(), RequestedAt: now}
	b, err := json.Marshal(envelope.SyncRequest{RequestID: q.RequestID, Kind: envelope.SyncRefresh, MovieID: movie,
		RequestedAt: q.RequestedAt, RequestedBy: "api"})
	if err != nil {
		return store.Refresh{}, err
	}
	// Not the client's context: a client that goes away must not leave a
	// write half done that others collapsed into.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), a.cfg.RefreshTimeout)
	defer cancel()
	a.m.refreshWrites.Inc()
	err = a.sync.WriteMessages(ctx, kafka.Message{Key: []byte(movie), Value: b})
	a.m.refreshWrites.Dec()
	if err != nil {
		a.log.Warn("refresh request not queued", zap.String("movie_id", movie), zap.Error(err))
		return store.Refresh{}, &httpError{status: http.StatusServiceUnavailable, retryAfter: 5,
			msg: "could not queue the refresh request (Kafka unavailable); retry shortly"}
	}
	rec, err := a.store.RecordRefresh(ctx, movie, q, a.cfg.CollapseWindow)
	if err != nil {
		a.log.Warn("refresh request queued but not recorded: its repeats will not collapse",
			zap.String("movie_id", movie), zap.String("request_id", q.RequestID), zap.Error(err))
		return q, nil
	}
	return rec, nil
}

// takeGlobal takes a token of the global refresh limit at now, or says how
// long until one is free.
func (a *API) takeGlobal(now time.Time) (time.Duration, bool) {
	res := a.global.ReserveN(now, 1)
	if !res.OK() {
		return time.Hour, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// retryAfter is a Retry-After in whole seconds, at least 1.
func retryAfter(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }

// flights makes concurrent refreshes of one movie in this process share
// one queued request: the first queues it, the others wait for its outcome
// (holding nothing but their goroutine) and answer it as collapsed.
// Requests in other replicas collapse through RecordRefresh. Safe for
// concurrent use.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	res  store.Refresh
	err  error
}

// do runs f for key unless a run for key is under way, and returns its
// outcome; a follower returns early with ctx's error when ctx ends.
func (fs *flights) do(ctx context.Context, key string, f func() (store.Refresh, error)) (store.Refresh, error) {
	fs.mu.Lock()
	if fs.m == nil {
		fs.m = map[string]*flight{}
	}
	if fl, ok := fs.m[key]; ok {
		fs.mu.Unlock()
		select {
		case <-fl.done:
			res := fl.res
			res.Collapsed = true
			return res, fl.err
		case <-ctx.Done():
			return store.Refresh{}, ctx.Err()
		}
	}
	fl := &flight{done: make(chan struct{})}
	fs.m[key] = fl
	fs.mu.Unlock()
	defer func() {
		fs.mu.Lock()
		delete(fs.m, key)
		fs.mu.Unlock()
		close(fl.done)
	}()
	fl.res, fl.err = f()
	return fl.res, fl.err
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "rr_" + hex.EncodeToString(b)
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
