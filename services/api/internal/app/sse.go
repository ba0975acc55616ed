package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	gauge     prometheus.Gauge
	connected atomic.Bool
	closed    bool
}

func newHub(g prometheus.Gauge) *hub {
	return &hub{subs: map[string]map[*subscriber]struct{}{}, gauge: g}
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
	h.gauge.Inc()
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
			h.gauge.Dec()
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

func (a *API) events(w http.ResponseWriter, r *http.Request) {
	movie, err := movieParam(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	// A stream outlives the server's read and write timeouts.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	sub := a.hub.subscribe(movie)
	defer a.hub.unsubscribe(sub)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(ev sseEvent) error {
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, ev.data); err != nil {
			return err
		}
		a.m.sseEvents.WithLabelValues(ev.name).Inc()
		return rc.Flush()
	}
	ready, _ := json.Marshal(map[string]string{"movie_id": movie})
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	if send(sseEvent{name: "ready", data: ready}) != nil {
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
				return
			}
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": heartbeat\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
