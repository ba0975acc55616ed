package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/schemas"
)

// docs/contract.md §4, GET /v1/movies/{movie_id}/reviews: the shape, newest
// source_updated_at first, paging with the opaque cursor, deletes hidden,
// an empty list for a movie with none, 400 for malformed input.
func TestMovieReviews(t *testing.T) {
	f := newFixture(t, Config{})
	const movie = "tt0111161"
	var rs []review.Review
	for i := range 45 {
		r := mkReview("generic", "m"+strconv.Itoa(i), movie, i%30) // ties on source_updated_at: id breaks them
		rs = append(rs, r)
	}
	noRating := mkReview("cinescore", "nr", movie, 100)
	noRating.Rating = nil
	rs = append(rs, noRating, mkReview("generic", "other", "tt0068646", 5))
	f.insert(t, rs...)
	if _, err := f.st.DB.Exec(context.Background(), `UPDATE reviews SET deleted = true WHERE id = 'generic:m7'`); err != nil {
		t.Fatal(err)
	}

	type list struct {
		MovieID     string           `json:"movie_id"`
		Reviews     []map[string]any `json:"reviews"`
		NextCursor  *string          `json:"next_cursor"`
		LastUpdated *time.Time       `json:"last_updated"`
		Stale       *bool            `json:"stale"`
		Providers   []map[string]any `json:"providers"`
	}
	code, h, b := get(t, "GET", f.url+"/v1/movies/"+movie+"/reviews", nil)
	if code != http.StatusOK || h.Get("Content-Type") != "application/json" {
		t.Fatalf("answer %d %s: %s", code, h.Get("Content-Type"), b)
	}
	first := decode[list](t, b)
	if first.MovieID != movie || len(first.Reviews) != 20 || first.NextCursor == nil || first.LastUpdated == nil ||
		first.Stale == nil || len(first.Providers) != 3 {
		t.Fatalf("first page: %s", b)
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(b, &raw)
	for _, k := range []string{"movie_id", "reviews", "next_cursor", "last_updated", "stale", "providers"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("answer lacks %q", k)
		}
	}
	// Every review has exactly the contract's fields and matches the schema.
	fields := "body,author,external_id,id,ingested_at,language,movie_id,provider,rating,source_updated_at,title,url,version"
	for _, r := range first.Reviews {
		var keys []string
		for k := range r {
			keys = append(keys, k)
		}
		if got := strings.Join(sortStrings(keys), ","); got != sortedCSV(fields) {
			t.Fatalf("review fields %s, want %s", got, sortedCSV(fields))
		}
		rb, _ := json.Marshal(r)
		if err := schemas.Validate(schemas.Review, rb); err != nil {
			t.Fatal(err)
		}
	}
	if first.Reviews[0]["id"] != "cinescore:nr" || first.Reviews[0]["rating"] != nil {
		t.Fatalf("newest review first: got %v", first.Reviews[0])
	}

	// Walk every page: each live review once, in (source_updated_at, id) descending order.
	seen := map[string]bool{}
	var prev map[string]any
	cursor := ""
	pages := 0
	for {
		url := f.url + "/v1/movies/" + movie + "/reviews?limit=7"
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		code, _, b := get(t, "GET", url, nil)
		if code != http.StatusOK {
			t.Fatalf("page %d: %d %s", pages, code, b)
		}
		p := decode[list](t, b)
		pages++
		for _, r := range p.Reviews {
			id := r["id"].(string)
			if seen[id] {
				t.Fatalf("%s on two pages", id)
			}
			seen[id] = true
			if prev != nil {
				pu, u := prev["source_updated_at"].(string), r["source_updated_at"].(string)
				if pu < u || (pu == u && prev["id"].(string) < id) {
					t.Fatalf("order: %v before %v", prev, r)
				}
			}
			prev = r
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if len(seen) != 45 || seen["generic:m7"] || seen["generic:other"] {
		t.Fatalf("pages gave %d reviews (deleted m7: %v, other movie: %v), want the 45 live ones", len(seen), seen["generic:m7"], seen["generic:other"])
	}

	// A movie without reviews: an empty list, last_updated null.
	code, _, b = get(t, "GET", f.url+"/v1/movies/tt0000001/reviews", nil)
	empty := decode[list](t, b)
	if code != http.StatusOK || empty.Reviews == nil || len(empty.Reviews) != 0 || empty.LastUpdated != nil || empty.NextCursor != nil {
		t.Fatalf("movie without reviews: %d %s", code, b)
	}

	for name, path := range map[string]string{
		"malformed id":     "/v1/movies/tt12/reviews",
		"not an imdb id":   "/v1/movies/nm0000001/reviews",
		"limit 0":          "/v1/movies/" + movie + "/reviews?limit=0",
		"limit 101":        "/v1/movies/" + movie + "/reviews?limit=101",
		"limit not number": "/v1/movies/" + movie + "/reviews?limit=ten",
		"cursor garbage":   "/v1/movies/" + movie + "/reviews?cursor=%%%",
		"cursor not json":  "/v1/movies/" + movie + "/reviews?cursor=bm90LWpzb24",
	} {
		code, h, b := get(t, "GET", f.url+path, nil)
		e := decode[map[string]string](t, b)
		if code != http.StatusBadRequest || h.Get("Content-Type") != "application/json" || e["error"] == "" {
			t.Errorf("%s: %d %s, want 400 with a JSON error", name, code, b)
		}
	}
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func sortedCSV(s string) string { return strings.Join(sortStrings(strings.Split(s, ",")), ",") }

// stale and providers come from provider_health against each provider's
// freshness objective; a provider without a row is down.
func TestStalenessAndProviders(t *testing.T) {
	f := newFixture(t, Config{Objective: time.Minute, Objectives: map[string]time.Duration{"reelpulse": 10 * time.Minute}})
	const movie = "tt0068646"
	type list struct {
		Stale     bool             `json:"stale"`
		Providers []ProviderStatus `json:"providers"`
	}
	status := func() (bool, map[string]string) {
		_, _, b := get(t, "GET", f.url+"/v1/movies/"+movie+"/reviews", nil)
		l := decode[list](t, b)
		out := map[string]string{}
		for _, p := range l.Providers {
			out[p.Name] = p.Status
		}
		return l.Stale, out
	}
	stale, ps := status()
	if !stale || fmt.Sprint(ps) != "map[cinescore:down generic:down reelpulse:down]" {
		t.Fatalf("no provider synced yet: stale %v, %v; want stale and all down", stale, ps)
	}
	exec := func(sql string, args ...any) {
		if _, err := f.st.DB.Exec(context.Background(), sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO provider_health (provider, status, last_success_at) VALUES
		('generic', 'ok', now() - interval '5 seconds'),
		('cinescore', 'ok', now() - interval '5 seconds'),
		('reelpulse', 'ok', now() - interval '5 minutes')`)
	stale, ps = status()
	if stale || fmt.Sprint(ps) != "map[cinescore:ok generic:ok reelpulse:ok]" {
		t.Fatalf("all within objective (reelpulse's is 10m): stale %v, %v", stale, ps)
	}
	exec(`UPDATE provider_health SET last_success_at = now() - interval '2 minutes' WHERE provider = 'generic'`)
	exec(`UPDATE provider_health SET status = 'down' WHERE provider = 'cinescore'`)
	stale, ps = status()
	if !stale || fmt.Sprint(ps) != "map[cinescore:down generic:degraded reelpulse:ok]" {
		t.Fatalf("generic past its objective, cinescore reported down: stale %v, %v", stale, ps)
	}
	// A provider the poller knows but the config does not is listed too.
	exec(`INSERT INTO provider_health (provider, status, last_success_at) VALUES ('newprov', 'ok', now())`)
	if _, ps = status(); ps["newprov"] != "ok" {
		t.Fatalf("providers %v, want newprov listed", ps)
	}
}

// docs/contract.md §4, GET /v1/reviews/{id}: 200 the review, 404 missing or deleted.
func TestGetReview(t *testing.T) {
	f := newFixture(t, Config{})
	r := mkReview("generic", "one", "tt0111161", 1)
	d := mkReview("generic", "gone", "tt0111161", 2)
	f.insert(t, r, d)
	if _, err := f.st.DB.Exec(context.Background(), `UPDATE reviews SET deleted = true WHERE id = $1`, d.ID); err != nil {
		t.Fatal(err)
	}
	code, h, b := get(t, "GET", f.url+"/v1/reviews/"+r.ID, nil)
	if code != http.StatusOK || h.Get("ETag") == "" {
		t.Fatalf("GET review: %d %v %s", code, h, b)
	}
	got := decode[review.Review](t, b)
	if got.ID != r.ID || got.Title != r.Title || *got.Rating != *r.Rating || !got.SourceUpdatedAt.Equal(r.SourceUpdatedAt) {
		t.Fatalf("review %+v, want %+v", got, r)
	}
	if err := schemas.Validate(schemas.Review, b); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{d.ID, "generic:never", "nonsense"} {
		code, h, b := get(t, "GET", f.url+"/v1/reviews/"+id, nil)
		if code != http.StatusNotFound || h.Get("Content-Type") != "application/json" || decode[map[string]string](t, b)["error"] == "" {
			t.Errorf("%s: %d %s, want 404 with a JSON error", id, code, b)
		}
	}
}

// GET answers carry an ETag; If-None-Match with it gives 304 until the
// data changes; Cache-Control follows the sync cadence.
func TestETagsAndCaching(t *testing.T) {
	f := newFixture(t, Config{MaxAge: 3 * time.Second})
	r := mkReview("generic", "e1", "tt0111161", 1)
	f.insert(t, r)
	for _, path := range []string{"/v1/movies/tt0111161/reviews", "/v1/reviews/" + r.ID, "/v1/movies", "/v1/ops/providers", "/"} {
		code, h, _ := get(t, "GET", f.url+path, nil)
		etag := h.Get("ETag")
		if code != http.StatusOK || !strings.HasPrefix(etag, `"`) || h.Get("Cache-Control") == "" {
			t.Fatalf("%s: %d ETag %q Cache-Control %q", path, code, etag, h.Get("Cache-Control"))
		}
		code, h2, b := get(t, "GET", f.url+path, map[string]string{"If-None-Match": etag})
		if path == "/v1/ops/providers" && code == http.StatusOK {
			continue // generated_at moves every second
		}
		if code != http.StatusNotModified || len(b) != 0 || h2.Get("ETag") != etag {
			t.Fatalf("%s with If-None-Match: %d ETag %q body %q, want 304", path, code, h2.Get("ETag"), b)
		}
		if code, _, _ := get(t, "GET", f.url+path, map[string]string{"If-None-Match": `"other", W/` + etag}); code != http.StatusNotModified {
			t.Fatalf("%s with a list of tags: %d, want 304", path, code)
		}
	}
	// No provider has synced: the answer is stale, and a shared cache must
	// revalidate it every time.
	_, h, _ := get(t, "GET", f.url+"/v1/movies/tt0111161/reviews", nil)
	if cc := h.Get("Cache-Control"); cc != "public, no-cache" {
		t.Fatalf("stale answer: Cache-Control %q, want public, no-cache", cc)
	}
	// Every provider synced just now (objective 60s): CACHE_MAX_AGE.
	if _, err := f.st.DB.Exec(context.Background(), `INSERT INTO provider_health (provider, status, last_success_at) VALUES
		('generic', 'ok', now()), ('cinescore', 'ok', now()), ('reelpulse', 'ok', now())`); err != nil {
		t.Fatal(err)
	}
	_, h, _ = get(t, "GET", f.url+"/v1/movies/tt0111161/reviews", nil)
	if cc := h.Get("Cache-Control"); cc != "public, max-age=3, stale-while-revalidate=6" {
		t.Fatalf("fresh answer: Cache-Control %q", cc)
	}
	// Within 4 s of an objective: never cached past it.
	if _, err := f.st.DB.Exec(context.Background(), `UPDATE provider_health SET last_success_at = now() - interval '57 seconds' WHERE provider = 'cinescore'`); err != nil {
		t.Fatal(err)
	}
	_, h, _ = get(t, "GET", f.url+"/v1/movies/tt0111161/reviews", nil)
	if cc := h.Get("Cache-Control"); cc != "public, max-age=2, stale-while-revalidate=1" && cc != "public, max-age=2" {
		t.Fatalf("3 s before turning stale: Cache-Control %q, want max-age=2 and no more than 1 s of stale-while-revalidate", cc)
	}
	if _, h, _ = get(t, "GET", f.url+"/v1/reviews/"+r.ID, nil); h.Get("Cache-Control") != "public, max-age=3, stale-while-revalidate=6" {
		t.Fatalf("single review: Cache-Control %q", h.Get("Cache-Control"))
	}
	_, h, _ = get(t, "GET", f.url+"/v1/movies/tt0111161/reviews", nil)
	etag := h.Get("ETag")
	f.insert(t, mkReview("generic", "e2", "tt0111161", 2))
	if code, h, _ := get(t, "GET", f.url+"/v1/movies/tt0111161/reviews", map[string]string{"If-None-Match": etag}); code != http.StatusOK || h.Get("ETag") == etag {
		t.Fatalf("after a change: %d, ETag %q unchanged", code, h.Get("ETag"))
	}
}

// Unknown paths and methods answer JSON errors too.
func TestJSONErrorsEverywhere(t *testing.T) {
	f := newFixture(t, Config{})
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/nope", 404},
		{"GET", "/v1/movies/tt0111161", 404},
		{"DELETE", "/v1/movies/tt0111161/reviews", 405},
		{"GET", "/v1/movies/tt0111161/refresh", 405},
	} {
		code, h, b := get(t, tc.method, f.url+tc.path, nil)
		if code != tc.code || h.Get("Content-Type") != "application/json" || decode[map[string]string](t, b)["error"] == "" {
			t.Errorf("%s %s: %d %q %s, want %d JSON", tc.method, tc.path, code, h.Get("Content-Type"), b, tc.code)
		}
		if tc.code == 405 && h.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
	}
}

// docs/contract.md §4, POST /v1/movies/{movie_id}/refresh: 202 with a request id,
// a sync request on reviews.sync-requests.v1, repeats within the window
// collapsed, 429 past the per-client limit.
func TestRefresh(t *testing.T) {
	f := newFixture(t, Config{RefreshRate: 0.01, RefreshBurst: 4, CollapseWindow: time.Minute})
	post := func(movie string) (int, http.Header, RefreshAccepted) {
		code, h, b := get(t, "POST", f.url+"/v1/movies/"+movie+"/refresh", nil)
		var a RefreshAccepted
		if code == http.StatusAccepted {
			a = decode[RefreshAccepted](t, b)
		} else if decode[map[string]string](t, b)["error"] == "" {
			t.Fatalf("%d without a JSON error: %s", code, b)
		}
		return code, h, a
	}
	code, _, a1 := post("tt0111161")
	if code != http.StatusAccepted || a1.RequestID == "" || a1.Collapsed || a1.Status != "queued" {
		t.Fatalf("first refresh: %d %+v", code, a1)
	}
	code, _, a2 := post("tt0111161")
	if code != http.StatusAccepted || a2.RequestID != a1.RequestID || !a2.Collapsed {
		t.Fatalf("repeat within the window: %d %+v, want the same request %s", code, a2, a1.RequestID)
	}
	code, _, a3 := post("tt0068646")
	if code != http.StatusAccepted || a3.RequestID == a1.RequestID {
		t.Fatalf("another movie: %d %+v", code, a3)
	}
	if code, _, _ := post("tt12"); code != http.StatusBadRequest {
		t.Fatalf("malformed movie id: %d, want 400", code)
	}
	// The burst of 4 is spent (the 400 took none): 429 with Retry-After.
	if code, _, a4 := post("tt0111161"); code != http.StatusAccepted || !a4.Collapsed {
		t.Fatalf("4th request, the last token: %d %+v", code, a4)
	}
	code, h, _ := post("tt0111161")
	if code != http.StatusTooManyRequests {
		t.Fatalf("past the limit: %d, want 429", code)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", h.Get("Retry-After"))
	}

	// Exactly one sync request per distinct request, keyed by movie, valid.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: f.st.Brokers, Topic: f.st.Topic(kafkax.TopicSyncRequests),
		GroupID: f.st.Names.Group("test-reader"), StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	got := map[string]envelope.SyncRequest{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(got) < 2 {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("sync requests %v: %v", got, err)
		}
		if err := schemas.Validate(schemas.SyncRequest, m.Value); err != nil {
			t.Fatal(err)
		}
		var sr envelope.SyncRequest
		_ = json.Unmarshal(m.Value, &sr)
		if string(m.Key) != sr.MovieID || sr.Kind != envelope.SyncRefresh {
			t.Fatalf("sync request %s: %+v", m.Key, sr)
		}
		if _, dup := got[sr.RequestID]; dup {
			t.Fatalf("request %s queued twice", sr.RequestID)
		}
		got[sr.RequestID] = sr
	}
	if got[a1.RequestID].MovieID != "tt0111161" || got[a3.RequestID].MovieID != "tt0068646" {
		t.Fatalf("sync requests %v", got)
	}
	// Nothing else was queued: the collapsed repeats wrote nothing.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if m, err := r.ReadMessage(ctx2); err == nil {
		t.Fatalf("an extra sync request: %s", m.Value)
	}
}

// Concurrent requests for one movie, as from several clients or replicas,
// collapse into one request.
func TestRefreshCollapsesConcurrentRequests(t *testing.T) {
	f := newFixture(t, Config{RefreshRate: 100, RefreshBurst: 100})
	ids := make(chan string, 20)
	for range 20 {
		go func() {
			_, _, b := get(t, "POST", f.url+"/v1/movies/tt0111161/refresh", nil)
			ids <- decode[RefreshAccepted](t, b).RequestID
		}()
	}
	first := <-ids
	for range 19 {
		if id := <-ids; id != first || id == "" {
			t.Fatalf("request ids %q and %q for one movie within the window", first, id)
		}
	}
}

// docs/contract.md §4, GET /v1/movies/{movie_id}/events: an event for each change
// of the movie's reviews within 1 s of the change reaching the store,
// through the real sink.
func TestEventsWithinOneSecondOfCommit(t *testing.T) {
	f := newFixture(t, Config{Heartbeat: 200 * time.Millisecond})
	f.startSink(t)
	const movie = "tt0133093"
	if code, _, b := get(t, "GET", f.url+"/v1/movies/tt1/events", nil); code != http.StatusBadRequest {
		t.Fatalf("malformed movie: %d %s", code, b)
	}
	s := openStream(t, f.url+"/v1/movies/"+movie+"/events")
	if ct := s.res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	if m := s.next(t, 5*time.Second); m.event != "ready" {
		t.Fatalf("first event %+v, want ready", m)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := testutilGauge(f.api); n != 1 {
			return fmt.Errorf("%v subscribers", n)
		}
		return nil
	})
	other := openStream(t, f.url+"/v1/movies/tt0068646/events")
	other.next(t, 5*time.Second)

	for i, ev := range []review.Event{
		{Op: review.OpUpsert, Review: mkReview("generic", "live1", movie, 1)},
		{Op: review.OpUpsert, Review: func() review.Review {
			r := mkReview("generic", "live1", movie, 2)
			r.Version, r.Title = 2, "edited"
			return r
		}()},
		{Op: review.OpDelete, Review: review.Review{ID: "generic:live1", Provider: "generic", ExternalID: "live1", Version: 3, SourceUpdatedAt: t0}},
	} {
		f.produce(t, ev)
		var m sseMessage
		for m.event != "review" {
			m = s.next(t, 10*time.Second)
		}
		var ch ReviewChange
		if err := json.Unmarshal([]byte(m.data), &ch); err != nil {
			t.Fatal(err)
		}
		if ch.Op != ev.Op || ch.Review.ID != ev.Review.ID || ch.Review.Version != ev.Review.Version || ch.LastUpdated == nil {
			t.Fatalf("change %d: %+v, want %s v%d", i, ch, ev.Op, ev.Review.Version)
		}
		// committed_at is the transaction's start, at or before its commit.
		var committed time.Time
		if err := f.st.DB.QueryRow(context.Background(), `SELECT committed_at FROM reviews WHERE id = 'generic:live1'`).Scan(&committed); err != nil {
			t.Fatal(err)
		}
		delay := m.at.Sub(committed)
		t.Logf("change %d (%s v%d): event %s after the commit", i, ev.Op, ev.Review.Version, delay.Round(time.Millisecond))
		if delay > time.Second {
			t.Fatalf("event %s after the commit, want within 1s", delay)
		}
		if ev.Op == review.OpUpsert {
			if err := schemas.Validate(schemas.Review, mustJSON(ch.Review)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The other movie's stream saw only heartbeats.
	select {
	case m := <-other.events:
		t.Fatalf("other movie's stream got %+v", m)
	default:
	}
	// Disconnecting unsubscribes.
	s.res.Body.Close()
	other.res.Body.Close()
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := testutilGauge(f.api); n != 0 {
			return fmt.Errorf("%v subscribers after both disconnected", n)
		}
		return nil
	})
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// The operator view counts dead letters per provider and per reason from
// reviews.dlq.v1, including records it cannot parse, and keeps following
// the topic.
func TestOpsCountsDeadLettersByProvider(t *testing.T) {
	f := newFixture(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.api.RunDeadLetters(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunDeadLetters: %v", err)
		}
	})
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: f.st.Brokers, Topic: f.st.Topic(kafkax.TopicDLQ)})
	t.Cleanup(func() { w.Close() })
	write := func(provider, reason string, key string) {
		t.Helper()
		dl := envelope.NewDeadLetter(envelope.StageProcessor, reason, fmt.Errorf("bad %s", key), key, []byte(`{}`), time.Now())
		dl.Provider = provider
		m, err := dl.Message()
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteMessages(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	write("cinescore", "invalid_field", "cinescore:1")
	write("cinescore", "not_json", "cinescore:2")
	write("generic", "invalid_field", "generic:1")
	if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte("x"), Value: []byte("not a dead letter")}); err != nil {
		t.Fatal(err)
	}
	check := func(want map[string]int64, reasons map[string]int64, total int64) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() error {
			code, _, body := get(t, "GET", f.url+"/v1/ops/providers", nil)
			if code != http.StatusOK {
				return fmt.Errorf("status %d: %s", code, body)
			}
			var ops Ops
			if err := json.Unmarshal(body, &ops); err != nil {
				return err
			}
			for _, p := range ops.Providers {
				if p.DeadLetters != want[p.Name] {
					return fmt.Errorf("provider %s: %d dead letters, want %d", p.Name, p.DeadLetters, want[p.Name])
				}
			}
			if fmt.Sprint(ops.DeadLetters.ByProvider) != fmt.Sprint(want) || fmt.Sprint(ops.DeadLetters.ByReason) != fmt.Sprint(reasons) {
				return fmt.Errorf("by provider %v, by reason %v; want %v, %v", ops.DeadLetters.ByProvider, ops.DeadLetters.ByReason, want, reasons)
			}
			if ops.DeadLetters.Total == nil || *ops.DeadLetters.Total != total {
				return fmt.Errorf("total %v, want %d", ops.DeadLetters.Total, total)
			}
			return nil
		})
	}
	check(map[string]int64{"cinescore": 2, "generic": 1, "unknown": 1},
		map[string]int64{"invalid_field": 2, "not_json": 1, "unknown": 1}, 4)
	// Later dead letters are counted as they arrive.
	write("reelpulse", "unknown_shape", "reelpulse:1")
	check(map[string]int64{"cinescore": 2, "generic": 1, "reelpulse": 1, "unknown": 1},
		map[string]int64{"invalid_field": 2, "not_json": 1, "unknown": 1, "unknown_shape": 1}, 5)
}
