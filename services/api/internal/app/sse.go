package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/changefeed"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// sseEvent is one server-sent event.
type sseEvent struct {
	name string
	data []byte
}

// ReviewChange is the data of a "review" event: one change of one of the
// movie's reviews. Op "delete" also covers a review that moved to another
// movie; its review then carries at least id, movie_id and version.
type ReviewChange struct {
	Op          review.Op     `json:"op"`
	Review      review.Review `json:"review"`
	LastUpdated *time.Time    `json:"last_updated"`
}

// subscriber is one open stream.
type subscriber struct {
	movie string
	ch    chan sseEvent
	// gone is closed when the hub drops a subscriber that fell behind.
	gone   chan struct{}
	closed atomic.Bool
}

// hub fans change events out to the subscribers of each movie. Safe for
// concurrent use.
type hub struct {
	mu        sync.Mutex
	subs      map[string]map[*subscriber]struct{}
	connected atomic.Bool
	closed    bool
}

func newHub() *hub {
	return &hub{subs: map[string]map[*subscriber]struct{}{}}
}

// streamLimiter counts open event streams per client key and in all, and
// refuses one past either cap (docs/contract.md §8). Safe for concurrent use.
type streamLimiter struct {
	mu        sync.Mutex
	perClient int
	max       int
	total     int
	open      map[string]int
}

// Reasons a stream is refused, as the refusal metric labels them.
const (
	refusedPerClient = "per_client"
	refusedGlobal    = "global"
)

// acquire takes a stream for client, or returns why not (refusedPerClient,
// refusedGlobal). Every successful acquire needs one release.
func (l *streamLimiter) acquire(client string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open == nil {
		l.open = map[string]int{}
	}
	switch {
	case l.open[client] >= l.perClient:
		return refusedPerClient
	case l.total >= l.max:
		return refusedGlobal
	}
	l.open[client]++
	l.total++
	return ""
}

func (l *streamLimiter) release(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.open[client]--; l.open[client] <= 0 {
		delete(l.open, client)
	}
}

func (h *hub) setConnected(v bool) { h.connected.Store(v) }
func (h *hub) isConnected() bool   { return h.connected.Load() }

func (h *hub) subscribe(movie string) *subscriber {
	s := &subscriber{movie: movie, ch: make(chan sseEvent, 64), gone: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.closed.Store(true)
		close(s.gone)
		return s
	}
	if h.subs[movie] == nil {
		h.subs[movie] = map[*subscriber]struct{}{}
	}
	h.subs[movie][s] = struct{}{}
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remove(s)
}

func (h *hub) remove(s *subscriber) {
	if set := h.subs[s.movie]; set != nil {
		if _, ok := set[s]; ok {
			delete(set, s)
			if len(set) == 0 {
				delete(h.subs, s.movie)
			}
		}
	}
	if s.closed.CompareAndSwap(false, true) {
		close(s.gone)
	}
}

// close ends every stream and refuses new ones.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, set := range h.subs {
		for s := range set {
			h.remove(s)
		}
	}
}

func (h *hub) wants(movie string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[movie]) > 0
}

// publish sends ev to movie's subscribers without blocking: one whose
// buffer is full is dropped (its client reconnects and reloads).
func (h *hub) publish(movie string, ev sseEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[movie] {
		select {
		case s.ch <- ev:
		default:
			h.remove(s)
		}
	}
}

func (h *hub) broadcastResync(reason string) {
	h.mu.Lock()
	movies := make([]string, 0, len(h.subs))
	for m := range h.subs {
		movies = append(movies, m)
	}
	h.mu.Unlock()
	for _, m := range movies {
		b, _ := json.Marshal(map[string]string{"movie_id": m, "reason": reason})
		h.publish(m, sseEvent{name: "resync", data: b})
	}
}

// onNotify turns a notification of the sink into events for the
// subscribers of each movie it names. It arrives only after its transaction
// committed, so the rows read here include the change.
func (a *API) onNotify(ctx context.Context, payload string) {
	ns, err := changefeed.Parse(payload)
	if err != nil {
		a.log.Warn("ignoring a malformed change notification", zap.String("payload", payload), zap.Error(err))
		return
	}
	// First the cache, then the events: a reader who reloads on an
	// event must not be served the answer from before the change.
	a.invalidate(ns)
	for _, n := range ns {
		a.onNotice(ctx, n)
	}
}

func (a *API) onNotice(ctx context.Context, n changefeed.Notice) {
	if !a.hub.wants(n.MovieID) {
		a.m.notices.WithLabelValues("no").Inc()
		return
	}
	a.m.notices.WithLabelValues("yes").Inc()
	if a.beforePublish != nil {
		a.beforePublish(n.MovieID)
	}
	if n.More {
		b, _ := json.Marshal(map[string]string{"movie_id": n.MovieID, "reason": "many changes"})
		a.hub.publish(n.MovieID, sseEvent{name: "resync", data: b})
		return
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := a.store.Rows(qctx, n.IDs)
	var last *time.Time
	if err == nil {
		last, err = a.store.LastChanged(qctx, n.MovieID)
	}
	if err != nil {
		a.log.Warn("reading changed reviews failed; subscribers will reload", zap.Error(err))
		b, _ := json.Marshal(map[string]string{"movie_id": n.MovieID, "reason": "read failed"})
		a.hub.publish(n.MovieID, sseEvent{name: "resync", data: b})
		return
	}
	for _, r := range rows {
		ch := ReviewChange{Op: review.OpUpsert, Review: r.Review, LastUpdated: last}
		if r.Deleted || r.MovieID != n.MovieID {
			ch.Op = review.OpDelete
			ch.Review = review.Review{ID: r.ID, Provider: r.Provider, ExternalID: r.ExternalID, MovieID: n.MovieID,
				Version: r.Version, SourceUpdatedAt: r.SourceUpdatedAt, IngestedAt: r.IngestedAt}
		}
		b, _ := json.Marshal(ch)
		a.hub.publish(n.MovieID, sseEvent{name: "review", data: b})
	}
}

// streamRetryAfter is the Retry-After of a refused stream, in seconds.
const streamRetryAfter = 10

func (a *API) events(w http.ResponseWriter, r *http.Request) {
	movie, err := movieParam(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	client := a.clientOf(r)
	switch a.streams.acquire(client) {
	case refusedPerClient:
		a.m.sseRefused.WithLabelValues(refusedPerClient).Inc()
		a.fail(w, r, &httpError{status: http.StatusTooManyRequests, retryAfter: streamRetryAfter,
			msg: fmt.Sprintf("this client already has %d event streams open, the most one client may (SSE_MAX_PER_CLIENT); close one first", a.cfg.SSEMaxPerClient)})
		return
	case refusedGlobal:
		a.m.sseRefused.WithLabelValues(refusedGlobal).Inc()
		a.fail(w, r, &httpError{status: http.StatusServiceUnavailable, retryAfter: streamRetryAfter,
			msg: "the server has as many event streams open as it serves (SSE_MAX); retry later"})
		return
	}
	defer a.streams.release(client)
	a.m.subscribers.Inc()
	defer a.m.subscribers.Dec()

	rc := http.NewResponseController(w)
	// A stream outlives the server's read and write timeouts; instead each
	// write has SSEWriteTimeout to reach the client, so a reader that stops
	// reading is closed once the socket's buffers are full.
	_ = rc.SetReadDeadline(time.Time{})
	sub := a.hub.subscribe(movie)
	defer a.hub.unsubscribe(sub)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	write := func(format string, args ...any) error {
		if err := rc.SetWriteDeadline(time.Now().Add(a.cfg.SSEWriteTimeout)); err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return err
		}
		return rc.Flush()
	}
	send := func(ev sseEvent) error {
		if err := write("event: %s\ndata: %s\n\n", ev.name, ev.data); err != nil {
			return err
		}
		a.m.sseEvents.WithLabelValues(ev.name).Inc()
		return nil
	}
	if err := rc.SetWriteDeadline(time.Now().Add(a.cfg.SSEWriteTimeout)); err != nil {
		return
	}
	w.WriteHeader(http.StatusOK)
	ready, _ := json.Marshal(map[string]string{"movie_id": movie})
	if write("retry: 2000\n\n") != nil || send(sseEvent{name: "ready", data: ready}) != nil {
		return
	}
	beat := time.NewTicker(a.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.gone:
			return
		case ev := <-sub.ch:
			if send(ev) != nil {
				a.m.sseClosed.Inc()
				return
			}
		case <-beat.C:
			if write(": heartbeat\n\n") != nil {
				a.m.sseClosed.Inc()
				return
			}
		}
	}
}
