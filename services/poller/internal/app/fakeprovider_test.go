package app

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// fakeGeneric speaks the generic provider's polling API of
// docs/providers.md: an append-only change feed with microsecond record
// times, paging over a fixed updated_since, a current-state listing per
// movie, bearer auth, a token bucket answering 429 with Retry-After and
// X-RateLimit-* headers, and faults (error rate, down, 429 storm). It
// records every request.
type fakeGeneric struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	feed     []fakeEntry
	versions map[string]int64
	clock    time.Time
	// bucket
	limit  float64
	tokens float64
	last   time.Time
	// faults
	errorRate float64
	down      bool
	storm     bool
	// requests
	log      []fakeRequest
	inflight int
	maxIn    int
}

type fakeEntry struct {
	recorded time.Time
	reviewID string
	movieID  string
	version  int64
	event    []byte
}

type fakeRequest struct {
	start, end time.Time
	holder     string
	code       int
}

const fakeKey = "fake-key"

func newFakeGeneric(t *testing.T, limit float64) *fakeGeneric {
	f := &fakeGeneric{t: t, versions: map[string]int64{}, limit: limit, tokens: math.Max(limit, 1), last: time.Now(),
		clock: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /providers/generic/v1/changes", f.guard(f.changes))
	mux.HandleFunc("GET /providers/generic/v1/movies/{id}/reviews", f.guard(f.movie))
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// add appends a change of review id (of movie) to the feed and returns its
// event bytes; deleted makes it a review.deleted.
func (f *fakeGeneric) add(id, movie string, deleted bool) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.versions[id]++
	f.clock = f.clock.Add(time.Millisecond)
	ev := provider.GenericEvent{Type: provider.GenericUpserted, Data: provider.GenericData{
		ReviewID: id, Version: f.versions[id], UpdatedAt: f.clock.Format(time.RFC3339Nano),
		Movie:  &provider.GenericMovie{ImdbID: movie, Title: "Movie " + movie},
		Author: "Ann", Title: "Title " + id, Body: "Body of " + id, Rating: &provider.GenericRating{Value: 7, Scale: 10},
	}}
	if deleted {
		ev.Type = provider.GenericDeleted
		ev.Data.Author, ev.Data.Title, ev.Data.Body, ev.Data.Rating = "", "", "", nil
	}
	b, err := json.Marshal(ev)
	if err != nil {
		f.t.Fatal(err)
	}
	f.addRaw(id, movie, f.versions[id], b)
	return b
}

// addRaw appends event bytes as they are (malformed ones too).
func (f *fakeGeneric) addRaw(id, movie string, version int64, event []byte) {
	rec := time.Now().UTC().Truncate(time.Microsecond)
	if n := len(f.feed); n > 0 && !rec.After(f.feed[n-1].recorded) {
		rec = f.feed[n-1].recorded.Add(time.Microsecond)
	}
	f.feed = append(f.feed, fakeEntry{recorded: rec, reviewID: id, movieID: movie, version: version, event: event})
}

func (f *fakeGeneric) set(fn func(f *fakeGeneric)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// want returns "{review_id}:{version}" of every change in the feed.
func (f *fakeGeneric) want() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]bool{}
	for _, e := range f.feed {
		out[fmt.Sprintf("%s:%d", e.reviewID, e.version)] = true
	}
	return out
}

func (f *fakeGeneric) requests() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.log...)
}

func (f *fakeGeneric) guard(h func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		f.mu.Lock()
		f.inflight++
		f.maxIn = max(f.maxIn, f.inflight)
		idx := len(f.log)
		f.log = append(f.log, fakeRequest{start: start, holder: strings.TrimPrefix(r.UserAgent(), "reviewpipe-poller/")})
		code := f.admit(w, r, start)
		f.mu.Unlock()
		if code == 0 {
			code = http.StatusOK
			h(w, r)
		}
		f.mu.Lock()
		f.inflight--
		f.log[idx].end, f.log[idx].code = time.Now(), code
		f.mu.Unlock()
	}
}

// admit applies the faults, the bucket and auth in the simulator's order
// (down, rate limit, auth, error rate); it answers and returns the code, or
// returns 0 to let the request through. Called with f.mu held.
func (f *fakeGeneric) admit(w http.ResponseWriter, r *http.Request, now time.Time) int {
	if f.down {
		w.Header().Set("Retry-After", "1")
		obs.WriteError(w, http.StatusServiceUnavailable, "generic is down")
		return http.StatusServiceUnavailable
	}
	burst := math.Max(f.limit, 1)
	f.tokens = math.Min(burst, f.tokens+now.Sub(f.last).Seconds()*f.limit)
	f.last = now
	ok := f.tokens >= 1 && !f.storm
	if ok {
		f.tokens--
	}
	w.Header().Set("X-RateLimit-Limit", strconv.FormatFloat(f.limit, 'f', -1, 64))
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(int(f.tokens)))
	w.Header().Set("X-RateLimit-Reset", strconv.Itoa(int(math.Ceil((burst-f.tokens)/f.limit))))
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil((1-f.tokens)/f.limit)))))
		obs.WriteError(w, http.StatusTooManyRequests, "rate limit exceeded")
		return http.StatusTooManyRequests
	}
	if r.Header.Get("Authorization") != "Bearer "+fakeKey {
		obs.WriteError(w, http.StatusUnauthorized, "missing or wrong API key")
		return http.StatusUnauthorized
	}
	if f.errorRate > 0 && rand.Float64() < f.errorRate {
		obs.WriteError(w, http.StatusInternalServerError, "internal error (simulated)")
		return http.StatusInternalServerError
	}
	return 0
}

func intParam(r *http.Request, name string, def int) int {
	if v := r.URL.Query().Get(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return def
}

func (f *fakeGeneric) changes(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if v := r.URL.Query().Get("updated_since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			obs.WriteError(w, http.StatusBadRequest, "updated_since is not RFC 3339")
			return
		}
		since = t
	}
	page, size := intParam(r, "page", 1), min(intParam(r, "page_size", 100), 500)
	f.mu.Lock()
	var match []fakeEntry
	for _, e := range f.feed {
		if !e.recorded.Before(since) {
			match = append(match, e)
		}
	}
	f.mu.Unlock()
	lo := min((page-1)*size, len(match))
	hi := min(lo+size, len(match))
	events := make([]json.RawMessage, 0, hi-lo)
	next := since
	for _, e := range match[lo:hi] {
		events = append(events, e.event)
		next = e.recorded.Add(time.Microsecond)
	}
	obs.WriteJSON(w, http.StatusOK, map[string]any{"events": events, "page": page, "page_size": size,
		"has_more": hi < len(match), "next_updated_since": next.UTC().Format(time.RFC3339Nano)})
}

func (f *fakeGeneric) movie(w http.ResponseWriter, r *http.Request) {
	movie := r.PathValue("id")
	page, size := intParam(r, "page", 1), min(intParam(r, "page_size", 100), 500)
	f.mu.Lock()
	latest := map[string][]byte{}
	var ids []string
	for _, e := range f.feed {
		if e.movieID == movie {
			if _, ok := latest[e.reviewID]; !ok {
				ids = append(ids, e.reviewID)
			}
			latest[e.reviewID] = e.event
		}
	}
	f.mu.Unlock()
	lo := min((page-1)*size, len(ids))
	hi := min(lo+size, len(ids))
	events := make([]json.RawMessage, 0, hi-lo)
	for _, id := range ids[lo:hi] {
		events = append(events, latest[id])
	}
	obs.WriteJSON(w, http.StatusOK, map[string]any{"events": events, "page": page, "page_size": size, "has_more": hi < len(ids)})
}

// perSecond counts requests by the whole second they started in.
func perSecond(reqs []fakeRequest) map[int64]int {
	out := map[int64]int{}
	for _, r := range reqs {
		out[r.start.Unix()]++
	}
	return out
}

// maxInWindow is the most requests that started within any window of length d.
func maxInWindow(reqs []fakeRequest, d time.Duration) int {
	best, j := 0, 0
	for i := range reqs {
		for reqs[i].start.Sub(reqs[j].start) >= d {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}
