package app

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/api/internal/store"
)

// lookups returns the answer cache's hit and miss counts of kind.
func lookups(a *API, kind string) (hits, misses float64) {
	switch kind {
	case "page":
		return testutil.ToFloat64(a.m.cacheHitPage), testutil.ToFloat64(a.m.cacheMissPage)
	default:
		return testutil.ToFloat64(a.m.cacheHitReview), testutil.ToFloat64(a.m.cacheMissReview)
	}
}

// second serves another api on the fixture's database and topics, with
// its own change listener, as another replica would.
func (f *fixture) second(t *testing.T, cfg Config) (*API, string) {
	t.Helper()
	cfg.Brokers, cfg.Names = f.st.Brokers, f.st.Names
	api, srv := serve(t, cfg, store.New(f.st.DB), nil, f.st.DatabaseURL, f.st.Brokers)
	testenv.Eventually(t, 10*time.Second, func() error { return api.LiveUpdatesReady(context.Background()) })
	return api, srv.URL
}

// Answers from the cache are byte for byte, header for header, what an
// api without a cache answers, ETag included, before and after the health
// part changes; hits and misses are counted; If-None-Match is answered 304
// from the cache.
func TestCachedAnswersAreTheUncachedBytes(t *testing.T) {
	f := newFixture(t, Config{})
	_, plain := f.second(t, Config{CacheBytes: -1})
	const movie = "tt0111161"
	var rs []review.Review
	for i := range 25 {
		rs = append(rs, mkReview("generic", fmt.Sprint("b", i), movie, i))
	}
	f.insert(t, rs...)
	paths := map[string]string{
		"/v1/movies/" + movie + "/reviews":         "page",
		"/v1/movies/" + movie + "/reviews?limit=5": "page",
		"/v1/movies/tt0000002/reviews":             "page",
		"/v1/reviews/generic:b3":                   "review",
		"/v1/reviews/generic:none":                 "review",
	}
	same := func(round string) {
		t.Helper()
		for path, kind := range paths {
			h0, m0 := lookups(f.api, kind)
			code, h, b := get(t, "GET", f.url+path, nil)
			h1, m1 := lookups(f.api, kind)
			pcode, ph, pb := get(t, "GET", plain+path, nil)
			if code != pcode || !bytes.Equal(b, pb) {
				t.Fatalf("%s %s: cached %d %.400s\nuncached %d %.400s", round, path, code, b, pcode, pb)
			}
			for _, k := range []string{"ETag", "Cache-Control", "Content-Type", "Content-Length", "Vary"} {
				if h.Get(k) != ph.Get(k) {
					t.Fatalf("%s %s: %s %q cached, %q uncached", round, path, k, h.Get(k), ph.Get(k))
				}
			}
			wantHit := round != "first"
			if (h1-h0 == 1) != wantHit || (m1-m0 == 1) == wantHit || h1+m1-h0-m0 != 1 {
				t.Fatalf("%s %s: hits +%v, misses +%v; want a hit: %v", round, path, h1-h0, m1-m0, wantHit)
			}
			if code != http.StatusOK {
				continue
			}
			h0, _ = lookups(f.api, kind)
			if code, _, b := get(t, "GET", f.url+path, map[string]string{"If-None-Match": h.Get("ETag")}); code != http.StatusNotModified || len(b) != 0 {
				t.Fatalf("%s %s with its ETag: %d", round, path, code)
			}
			if h1, _ := lookups(f.api, kind); h1 != h0+1 {
				t.Fatalf("%s %s: the 304 was not answered from the cache", round, path)
			}
		}
	}
	same("first")
	same("second")
	// Provider health changes without a review change: the cached pages
	// take the new health part (hits, not misses), as the uncached api.
	if _, err := f.st.DB.Exec(context.Background(), `INSERT INTO provider_health (provider, status, last_success_at) VALUES
		('generic', 'ok', now()), ('cinescore', 'ok', now()), ('reelpulse', 'degraded', now() - interval '10 seconds')`); err != nil {
		t.Fatal(err)
	}
	same("after a health change")
	if _, err := f.st.DB.Exec(context.Background(), `UPDATE provider_health SET status = 'ok'`); err != nil {
		t.Fatal(err)
	}
	same("after recovery")
	_, h, b := get(t, "GET", f.url+"/v1/movies/"+movie+"/reviews", nil)
	if !bytes.Contains(b, []byte(`"stale":false`)) || h.Get("Cache-Control") != "public, max-age=2, stale-while-revalidate=4" {
		t.Fatalf("all providers ok: %s %s", h.Get("Cache-Control"), b)
	}
}

// A change committed by the sink invalidates the movie's cached page
// before the event that announces it goes out: a reader that reloads on
// the event always finds the change. 50 changes, each read the moment its
// event arrives, each preceded by a read that fills the cache.
func TestCacheInvalidatedBeforeEvent(t *testing.T) {
	f := newFixture(t, Config{})
	f.startSink(t)
	const movie = "tt0133093"
	s := openStream(t, f.url+"/v1/movies/"+movie+"/events")
	if m := s.next(t, 5*time.Second); m.event != "ready" {
		t.Fatalf("first event %+v", m)
	}
	// Nobody reads between the notification and the events here: when an
	// event is about to go out, the page must be gone from the cache.
	var early atomic.Int64
	f.api.beforePublish = func(m string) {
		if _, cached := f.api.cache.Get(pageKey(m, 20)); cached {
			early.Add(1)
		}
	}
	page := f.url + "/v1/movies/" + movie + "/reviews"
	for i := range 50 {
		get(t, "GET", page, nil) // fill
		if _, _, b := get(t, "GET", page, nil); i > 0 && !bytes.Contains(b, []byte(fmt.Sprintf(`"generic:inv%d"`, i-1))) {
			t.Fatalf("change %d: the page lacks the previous change", i)
		}
		r := mkReview("generic", fmt.Sprint("inv", i), movie, 100+i) // newest: first on the page
		f.produce(t, review.Event{Op: review.OpUpsert, Review: r})
		for {
			m := s.next(t, 10*time.Second)
			if m.event == "review" && strings.Contains(m.data, `"id":"`+r.ID+`"`) {
				break
			}
		}
		_, _, b := get(t, "GET", page, nil)
		if !bytes.Contains(b, []byte(`"id":"`+r.ID+`"`)) {
			t.Fatalf("change %d: read right after its event, the page lacks %s:\n%.300s", i, r.ID, b)
		}
	}
	if n := early.Load(); n > 0 {
		t.Fatalf("%d events were about to go out while the page was still cached", n)
	}
	if hits, misses := lookups(f.api, "page"); hits < 50 || misses < 50 {
		t.Fatalf("page lookups: %v hits, %v misses; want the cache used (50 hits) and invalidated (50 misses at least)", hits, misses)
	}
}

// With CacheRefresh, a page that readers were served from the cache is
// read again right after a change drops it: the next read is a hit and
// holds the change. A page filled and never read again is only dropped.
// Every reload begins after the invalidation, so none puts back the page
// from before the change (the reads right after each event check it).
func TestCacheReloadsHotPagesAfterAChange(t *testing.T) {
	f := newFixture(t, Config{CacheRefresh: true})
	f.startSink(t)
	const hotMovie = "tt0068646"
	s := openStream(t, f.url+"/v1/movies/"+hotMovie+"/events")
	if m := s.next(t, 5*time.Second); m.event != "ready" {
		t.Fatalf("first event %+v", m)
	}
	reloads := func(result string) float64 { return testutil.ToFloat64(f.api.m.cacheReloads.WithLabelValues(result)) }
	hot := f.url + "/v1/movies/" + hotMovie + "/reviews"
	for i := range 10 {
		coldMovie := fmt.Sprintf("tt%07d", 71562+i) // read once before its change, once after
		cold := f.url + "/v1/movies/" + coldMovie + "/reviews"
		get(t, "GET", hot, nil)  // fill
		get(t, "GET", hot, nil)  // a reader served from the cache: the page is hot
		get(t, "GET", cold, nil) // fill only
		stored := reloads("stored")
		r := mkReview("generic", fmt.Sprint("hot", i), hotMovie, 100+i)
		c := mkReview("generic", fmt.Sprint("cold", i), coldMovie, 100+i)
		f.produce(t, review.Event{Op: review.OpUpsert, Review: r}, review.Event{Op: review.OpUpsert, Review: c})
		for {
			m := s.next(t, 10*time.Second)
			if m.event == "review" && strings.Contains(m.data, `"id":"`+r.ID+`"`) {
				break
			}
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			if reloads("stored") <= stored {
				return fmt.Errorf("change %d: no page reloaded yet (reloads %v stored, %v refused, %v failed, %v skipped)", i,
					reloads("stored"), reloads("refused"), reloads("failed"), reloads("skipped"))
			}
			return nil
		})
		if got := reloads("stored"); got != stored+1 {
			t.Fatalf("change %d: %v pages reloaded, want the hot one only", i, got-stored)
		}
		h0, m0 := lookups(f.api, "page")
		_, _, b := get(t, "GET", hot, nil)
		if h1, m1 := lookups(f.api, "page"); h1 != h0+1 || m1 != m0 {
			t.Fatalf("change %d: the read after the reload was not a hit (hits +%v, misses +%v)", i, h1-h0, m1-m0)
		}
		if !bytes.Contains(b, []byte(`"id":"`+r.ID+`"`)) {
			t.Fatalf("change %d: the reloaded page lacks %s:\n%.300s", i, r.ID, b)
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			if _, _, b := get(t, "GET", cold, nil); !bytes.Contains(b, []byte(`"id":"`+c.ID+`"`)) {
				return fmt.Errorf("change %d: the cold page lacks %s", i, c.ID)
			}
			return nil
		})
	}
}

// Two api replicas on one database, each with its own listener: a change
// invalidates the cached page in both.
func TestCacheInvalidatedInEveryReplica(t *testing.T) {
	f := newFixture(t, Config{})
	f.startSink(t)
	b, bURL := f.second(t, Config{})
	const movie = "tt0068646"
	urls := []string{f.url, bURL}
	apis := []*API{f.api, b}
	var streams []*sseClient
	for _, u := range urls {
		s := openStream(t, u+"/v1/movies/"+movie+"/events")
		s.next(t, 5*time.Second)
		streams = append(streams, s)
	}
	for i := range 5 {
		for j, u := range urls {
			get(t, "GET", u+"/v1/movies/"+movie+"/reviews", nil)
			h0, _ := lookups(apis[j], "page")
			get(t, "GET", u+"/v1/movies/"+movie+"/reviews", nil)
			if h1, _ := lookups(apis[j], "page"); h1 != h0+1 {
				t.Fatalf("replica %d did not cache the page", j)
			}
		}
		r := mkReview("cinescore", fmt.Sprint("rep", i), movie, 200+i)
		f.produce(t, review.Event{Op: review.OpUpsert, Review: r})
		for j, s := range streams {
			for {
				if m := s.next(t, 10*time.Second); m.event == "review" && strings.Contains(m.data, r.ID) {
					break
				}
			}
			if _, _, b := get(t, "GET", urls[j]+"/v1/movies/"+movie+"/reviews", nil); !bytes.Contains(b, []byte(`"id":"`+r.ID+`"`)) {
				t.Fatalf("change %d: replica %d still serves the page without %s", i, j, r.ID)
			}
		}
	}
}

// The fill race: a read that began before a commit, and finished reading
// the store before it, does not leave its answer in the cache once the
// commit's notification was handled. The read is held between the store
// and the cache (afterRead) while the change commits and is announced.
func TestCacheFillBegunBeforeACommitIsNotKept(t *testing.T) {
	f := newFixture(t, Config{})
	const movie = "tt0099685"
	f.insert(t, mkReview("generic", "old", movie, 1))
	entered, release := make(chan string), make(chan struct{})
	var hold atomic.Bool
	hold.Store(true)
	f.api.afterRead = func(key string) {
		if hold.Load() {
			entered <- key
			<-release
		}
	}
	for _, tc := range []struct{ path, ext string }{
		{"/v1/movies/" + movie + "/reviews", "new"},
		{"/v1/reviews/generic:new2", "new2"}, // a 404 that stops being one
	} {
		want := `"generic:` + tc.ext + `"`
		hold.Store(true)
		done := make(chan []byte)
		go func() {
			_, _, b := get(t, "GET", f.url+tc.path, nil)
			done <- b
		}()
		<-entered // the store was read: the change is not in it
		refused := f.api.cache.Stats().Refused
		f.insert(t, mkReview("generic", tc.ext, movie, 50)) // committed, notified, handled
		hold.Store(false)
		close(release)
		if b := <-done; bytes.Contains(b, []byte(want)) {
			t.Fatalf("%s: the held read saw the change it began before: %s", tc.path, b)
		}
		release = make(chan struct{})
		if f.api.cache.Stats().Refused != refused+1 {
			t.Fatalf("%s: the held read's fill was not refused", tc.path)
		}
		if _, _, b := get(t, "GET", f.url+tc.path, nil); !bytes.Contains(b, []byte(want)) {
			t.Fatalf("%s: after the change was announced the api serves the answer from before it:\n%.300s", tc.path, b)
		}
	}
}

// The cache holds at most CacheBytes: filling past it evicts the least
// recently used answers; a negative CacheBytes (API_CACHE_BYTES=0) caches
// nothing.
func TestCacheStaysWithinItsBytes(t *testing.T) {
	const bound = 16 << 10
	f := newFixture(t, Config{CacheBytes: bound})
	var rs []review.Review
	for m := range 30 {
		for i := range 3 {
			rs = append(rs, mkReview("generic", fmt.Sprintf("m%d-%d", m, i), fmt.Sprintf("tt%07d", 1000+m), i))
		}
	}
	f.insert(t, rs...)
	for m := range 30 {
		get(t, "GET", f.url+fmt.Sprintf("/v1/movies/tt%07d/reviews", 1000+m), nil)
		if s := f.api.cache.Stats(); s.Bytes > bound || s.Bytes <= 0 {
			t.Fatalf("after %d pages: %d bytes held, bound %d", m+1, s.Bytes, bound)
		}
	}
	s := f.api.cache.Stats()
	if s.Evictions == 0 || s.Entries >= 30 || s.Entries < 2 {
		t.Fatalf("30 pages of ~%d bytes into %d: %+v", bound/max(1, s.Entries), bound, s)
	}
	// The least recently used went first; the last one read is there.
	_, m0 := lookups(f.api, "page")
	get(t, "GET", f.url+"/v1/movies/tt0001000/reviews", nil)
	get(t, "GET", f.url+"/v1/movies/tt0001029/reviews", nil)
	if _, m1 := lookups(f.api, "page"); m1 != m0+1 {
		t.Fatalf("misses +%v reading the first page filled and the last: want the first evicted, the last kept", m1-m0)
	}
	_, _, metrics := get(t, "GET", f.url+"/metrics", nil)
	for _, name := range []string{"reviewpipe_api_cache_bytes ", "reviewpipe_api_cache_max_bytes 16384", "reviewpipe_api_cache_evictions_total ",
		`reviewpipe_api_cache_lookups_total{kind="page",result="hit"} `, "reviewpipe_api_cache_entries "} {
		if !bytes.Contains(metrics, []byte("\n"+name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	off, offURL := f.second(t, Config{CacheBytes: -1})
	path := offURL + "/v1/movies/tt0001000/reviews"
	get(t, "GET", path, nil)
	// A change that is not announced shows at once: nothing was cached.
	if _, err := f.st.DB.Exec(context.Background(), `UPDATE reviews SET title = 'unannounced' WHERE id = 'generic:m0-0'`); err != nil {
		t.Fatal(err)
	}
	if _, _, b := get(t, "GET", path, nil); !bytes.Contains(b, []byte("unannounced")) {
		t.Fatal("with the cache off, a change is not read from the store")
	}
	if s := off.cache.Stats(); s.Bytes != 0 || s.Entries != 0 {
		t.Fatalf("cache off: %+v", s)
	}
	if h, m := lookups(off, "page"); h+m != 0 {
		t.Fatalf("cache off: %v hits and %v misses counted", h, m)
	}
}

// When the change listener loses its connection, notifications may be
// missed: the cache is flushed (and bypassed until it is back), so a change
// committed meanwhile is served after the reconnection.
func TestListenerReconnectFlushesTheCache(t *testing.T) {
	f := newFixture(t, Config{})
	const movie = "tt0110912"
	f.insert(t, mkReview("generic", "rc", movie, 1))
	path := f.url + "/v1/movies/" + movie + "/reviews"
	get(t, "GET", path, nil)
	// A change nobody announces (as one committed while the listener is
	// away): the cached page hides it.
	if _, err := f.st.DB.Exec(context.Background(), `UPDATE reviews SET title = 'missed' WHERE id = 'generic:rc'`); err != nil {
		t.Fatal(err)
	}
	if _, _, b := get(t, "GET", path, nil); bytes.Contains(b, []byte("missed")) {
		t.Fatal("the page was not cached")
	}
	s := openStream(t, f.url+"/v1/movies/"+movie+"/events")
	s.next(t, 5*time.Second)
	flushes := f.api.cache.Stats().Flushes
	var killed int
	if err := f.st.DB.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listeners: %v", killed, err)
	}
	// The api tells streams to reload once it listens again.
	if m := s.next(t, 10*time.Second); m.event != "resync" {
		t.Fatalf("after the listener was cut: %+v, want resync", m)
	}
	if _, _, b := get(t, "GET", path, nil); !bytes.Contains(b, []byte("missed")) {
		t.Fatalf("after the listener reconnected the page still hides the change: %.300s", b)
	}
	if n := f.api.cache.Stats().Flushes - flushes; n != 2 {
		t.Fatalf("%d flushes, want 2: when the listener was lost and when it was back", n)
	}
}

// benchAPI is an api on its own database with one movie of 20 reviews,
// its cache on (as with a connected listener) or off.
func benchAPI(b *testing.B, cacheBytes int64) (*API, http.Handler) {
	st := testenv.New(b)
	a, err := New(Config{CacheBytes: cacheBytes, HealthTTL: time.Second, Brokers: st.Brokers, Names: st.Names},
		store.New(st.DB), nil, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	a.cache.SetBypass(false)
	for i := range 20 {
		r := mkReview("generic", fmt.Sprint("bench", i), "tt0111161", i)
		if _, err := st.DB.Exec(context.Background(), `INSERT INTO reviews (id, provider, external_id, movie_id, author, rating, title, body,
			language, url, version, content_hash, source_updated_at, ingested_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			r.ID, r.Provider, r.ExternalID, r.MovieID, r.Author, r.Rating, r.Title, strings.Repeat(r.Body+" ", 20), r.Language, r.URL,
			r.Version, review.ContentHash(review.OpUpsert, r), r.SourceUpdatedAt, r.IngestedAt); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := st.DB.Exec(context.Background(), `INSERT INTO movies VALUES ('tt0111161', now());
		INSERT INTO provider_health (provider, status, last_success_at) VALUES ('generic', 'ok', now() + interval '1 hour'),
		('cinescore', 'ok', now() + interval '1 hour'), ('reelpulse', 'ok', now() + interval '1 hour')`); err != nil {
		b.Fatal(err)
	}
	return a, a.Handler()
}

// nullWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the handler, not a recorder.
type nullWriter struct{ h http.Header }

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nullWriter) WriteHeader(int)             {}

func benchRead(b *testing.B, h http.Handler, path string, header map[string]string) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := &nullWriter{h: http.Header{}}
	h.ServeHTTP(w, req) // warm: fill the cache, read provider health
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// A movie's first page (20 reviews, ~12 KB) through the handler: from the
// cache, revalidated from the cache (304), and from PostgreSQL. ns/op of
// the first two is the api's CPU per read; the last also waits for
// PostgreSQL.
func BenchmarkMovieReviews(b *testing.B) {
	const path = "/v1/movies/tt0111161/reviews"
	b.Run("cached", func(b *testing.B) {
		_, h := benchAPI(b, 0)
		benchRead(b, h, path, nil)
	})
	b.Run("cached-304", func(b *testing.B) {
		a, h := benchAPI(b, 0)
		w := &nullWriter{h: http.Header{}}
		a.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		benchRead(b, h, path, map[string]string{"If-None-Match": w.h.Get("ETag")})
	})
	b.Run("uncached", func(b *testing.B) {
		_, h := benchAPI(b, -1)
		benchRead(b, h, path, nil)
	})
}

// One review through the handler, from the cache and from PostgreSQL.
func BenchmarkReview(b *testing.B) {
	const path = "/v1/reviews/generic:bench3"
	b.Run("cached", func(b *testing.B) {
		_, h := benchAPI(b, 0)
		benchRead(b, h, path, nil)
	})
	b.Run("uncached", func(b *testing.B) {
		_, h := benchAPI(b, -1)
		benchRead(b, h, path, nil)
	})
}

// The reload queue holds each page once and at most maxPendingReloads
// pages: at the edge a page is queued, one past it is skipped and counted.
// Its workers are taken as busy, so nothing is read meanwhile.
func TestReloadQueueBound(t *testing.T) {
	a := &API{m: newMetrics(prometheus.NewRegistry())}
	a.reloads.workers = maxReloads // every worker busy: the queue only grows
	skipped := func() float64 { return testutil.ToFloat64(a.m.cacheReloads.WithLabelValues("skipped")) }
	for i := range maxPendingReloads - 1 {
		a.reload(pageKey(fmt.Sprintf("tt%07d", i), 20))
	}
	a.reload(pageKey("tt0000000", 20)) // already waiting: not queued twice
	if n := len(a.reloads.order); n != maxPendingReloads-1 || skipped() != 0 {
		t.Fatalf("%d pages waiting, %v skipped; want %d and none", n, skipped(), maxPendingReloads-1)
	}
	a.reload(pageKey("tt9999998", 20)) // the last place
	if n := len(a.reloads.order); n != maxPendingReloads || skipped() != 0 {
		t.Fatalf("at the bound: %d pages waiting, %v skipped", n, skipped())
	}
	a.reload(pageKey("tt9999999", 20)) // one past it
	if n := len(a.reloads.order); n != maxPendingReloads || skipped() != 1 {
		t.Fatalf("past the bound: %d pages waiting, %v skipped; want %d and 1", n, skipped(), maxPendingReloads)
	}
}
