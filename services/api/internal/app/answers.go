package app

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/changefeed"
	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
	"github.com/reviewpipe/reviewpipe/services/api/internal/cache"
	"github.com/reviewpipe/reviewpipe/services/api/internal/store"
)

// DefaultCacheBytes is the default bound of the answer cache (API_CACHE_BYTES).
const DefaultCacheBytes = 64 << 20

// answer is an encoded answer as the cache holds it: the exact bytes the
// uncached path writes and their ETag. Immutable once made.
type answer struct {
	body []byte
	etag string
	// prefix: body[:prefix] does not depend on provider health; the rest
	// is tail[1:] of the healthPart whose ver is health. Both zero for
	// answers without a health part (single reviews).
	prefix int
	health uint64
	// notFound: the answer is 404 (body empty).
	notFound bool
}

// Cache scopes: what a change notification invalidates.
const reviewsScope = "reviews" // every single-review answer, for notices with more ids than fit

func movieScope(movie string) string { return "movie:" + movie }
func reviewScope(id string) string   { return "review:" + id }

// invalidate drops the cached answers a notification's changes make
// wrong. It runs before any event of the notification is published.
func (a *API) invalidate(ns []changefeed.Notice) {
	if !a.cache.Enabled() {
		return
	}
	scopes := make([]string, 0, 2*len(ns))
	for _, n := range ns {
		scopes = append(scopes, movieScope(n.MovieID))
		for _, id := range n.IDs {
			scopes = append(scopes, reviewScope(id))
		}
		if n.More {
			// Some changed ids are not named: any review may have
			// appeared, changed or gone.
			scopes = append(scopes, reviewsScope)
		}
	}
	if !a.cfg.CacheRefresh {
		a.cache.Invalidate(scopes...)
		return
	}
	for _, key := range a.cache.InvalidateHot(scopes...) {
		if _, _, ok := parsePageKey(key); ok {
			a.reload(key)
		}
	}
}

// maxReloads bounds the page reloads in flight: each holds a PostgreSQL
// connection for one read. maxPendingReloads bounds the pages waiting.
const (
	maxReloads        = 4
	maxPendingReloads = 4096
)

// reloads is the queue of pages to read again (reload): each key once,
// in the order they were dropped, read by up to maxReloads workers.
type reloads struct {
	mu      sync.Mutex
	pending map[string]bool
	order   []string
	workers int
}

// reload reads a movie's first page again in the background, after a
// change dropped it while readers were being served it, and puts it back:
// the next readers hit instead of each waiting on PostgreSQL (a third of
// the reads of hot movies during ingest in make bench's hotreads). The read
// begins after the invalidation (cache.Begin when its turn comes), so it
// holds the change, and a later change refuses its put. A page already
// waiting is not queued twice; with maxPendingReloads waiting, it is not
// queued (skipped), and the next reader fills it, as without reloads.
func (a *API) reload(key string) {
	r := &a.reloads
	r.mu.Lock()
	if r.pending[key] {
		r.mu.Unlock()
		return
	}
	if len(r.order) >= maxPendingReloads {
		r.mu.Unlock()
		a.m.cacheReloads.WithLabelValues("skipped").Inc()
		return
	}
	if r.pending == nil {
		r.pending = map[string]bool{}
	}
	r.pending[key] = true
	r.order = append(r.order, key)
	start := r.workers < maxReloads
	if start {
		r.workers++
	}
	r.mu.Unlock()
	if start {
		go a.reloadWorker()
	}
}

// reloadWorker reloads queued pages until none is left.
func (a *API) reloadWorker() {
	r := &a.reloads
	for {
		r.mu.Lock()
		if len(r.order) == 0 {
			r.workers--
			r.mu.Unlock()
			return
		}
		key := r.order[0]
		r.order = r.order[1:]
		delete(r.pending, key)
		r.mu.Unlock()
		a.reloadPage(key)
	}
}

// reloadPage reads key's page and puts it in the cache.
func (a *API) reloadPage(key string) {
	movie, limit, ok := parsePageKey(key)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tok := a.cache.Begin()
	hp, _, err := a.healthPart(ctx)
	var ans *answer
	if err == nil {
		ans, err = a.readPage(ctx, movie, limit, nil, hp)
	}
	switch {
	case err != nil:
		a.m.cacheReloads.WithLabelValues("failed").Inc()
	case ans.prefix > 0 && a.cache.Put(tok, key, []string{movieScope(movie)}, ans, len(ans.body)):
		a.m.cacheReloads.WithLabelValues("stored").Inc()
	default:
		a.m.cacheReloads.WithLabelValues("refused").Inc()
	}
}

// healthPart is what provider health contributes to a movie's answer,
// the same for every movie: "stale" and "providers". It is derived from
// the provider_health rows (read at most once per HealthTTL) and the
// clock, and holds while the rows are the same and the clock has not
// passed until: no provider within its objective has left it.
type healthPart struct {
	// ver moves when tail changes.
	ver     uint64
	rowsVer uint64
	// until is when the first provider now within its freshness
	// objective leaves it (zero: none is within it).
	until     time.Time
	stale     bool
	degraded  bool // some provider is not ok
	providers []ProviderStatus
	// tail is `{"stale":...,"providers":[...]}` and a newline, as encoded
	// at the end of a ReviewList (from its second byte).
	tail []byte
}

// healthParts keeps the current healthPart. Safe for concurrent use.
type healthParts struct {
	mu  sync.Mutex
	cur *healthPart
	ver uint64
}

// healthPart returns the health part of answers at the current time, and
// that time.
func (a *API) healthPart(ctx context.Context) (*healthPart, time.Time, error) {
	rows, rowsVer, err := a.health.getVersioned(ctx, a.cfg.HealthTTL, a.store.ProviderHealth)
	if err != nil {
		return nil, time.Time{}, err
	}
	now := a.now()
	ps := &a.parts
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if cur := ps.cur; cur != nil && cur.rowsVer == rowsVer && (cur.until.IsZero() || !now.After(cur.until)) {
		return cur, now, nil
	}
	views := providerViews(&a.cfg, rows, now)
	p := &healthPart{rowsVer: rowsVer, stale: anyStale(views)}
	for _, v := range views {
		p.providers = append(p.providers, v.ProviderStatus)
		p.degraded = p.degraded || v.Status != statusOK
		if !v.Stale && v.LastSuccessAt != nil {
			// Stale once the age passes the objective (providerViews).
			if flip := v.LastSuccessAt.Add(v.Objective); p.until.IsZero() || flip.Before(p.until) {
				p.until = flip
			}
		}
	}
	p.tail, err = jsonx.AppendUnescaped(nil, struct {
		Stale     bool             `json:"stale"`
		Providers []ProviderStatus `json:"providers"`
	}{p.stale, p.providers})
	if err != nil {
		return nil, now, err
	}
	if ps.cur != nil && bytes.Equal(ps.cur.tail, p.tail) {
		p.ver = ps.cur.ver
	} else {
		ps.ver++
		p.ver = ps.ver
	}
	ps.cur = p
	return p, now, nil
}

// listCacheControl is the Cache-Control of a movie's reviews with health
// part p at now. A stale or degraded answer is "no-cache": a shared cache
// must revalidate it every time (a 304 while it holds, answered from this
// cache without encoding), so the notice goes as soon as the provider
// recovers. Otherwise a shared cache may serve it for CACHE_MAX_AGE (and
// twice that while revalidating), but never past the moment a provider's
// last sync leaves its objective and the answer turns stale.
func (a *API) listCacheControl(p *healthPart, now time.Time) string {
	if p.stale || p.degraded {
		return "public, no-cache"
	}
	s := int(a.cfg.MaxAge / time.Second)
	swr := max(1, 2*s)
	left := int(p.until.Sub(now) / time.Second)
	if p.until.IsZero() || left >= s+swr {
		return a.listCC
	}
	s = min(s, left)
	swr = min(swr, left-s)
	if s < 1 {
		return "public, no-cache"
	}
	cc := "public, max-age=" + strconv.Itoa(s)
	if swr >= 1 {
		cc += ", stale-while-revalidate=" + strconv.Itoa(swr)
	}
	return cc
}

func pageKey(movie string, limit int) string {
	return "page\x00" + movie + "\x00" + strconv.Itoa(limit)
}

// parsePageKey is pageKey backwards; ok is false for other keys.
func parsePageKey(key string) (movie string, limit int, ok bool) {
	rest, ok := strings.CutPrefix(key, "page\x00")
	if !ok {
		return "", 0, false
	}
	movie, l, ok := strings.Cut(rest, "\x00")
	if !ok {
		return "", 0, false
	}
	limit, err := strconv.Atoi(l)
	return movie, limit, err == nil
}

func (a *API) movieReviews(w http.ResponseWriter, r *http.Request) {
	movie, err := movieParam(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q, err := query(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	limit, err := limitOf(q, 20, 100)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var after *store.Cursor
	if c := q.Get("cursor"); c != "" {
		if after, err = decodeCursor(c); err != nil {
			a.fail(w, r, badRequest(err.Error()))
			return
		}
	}
	hp, now, err := a.healthPart(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	cc := a.listCacheControl(hp, now)
	cached := after == nil && a.cache.Enabled()
	var key string
	var tok cache.Token
	if cached {
		key = pageKey(movie, limit)
		if ans, ok := a.cache.Get(key); ok {
			a.m.cacheHitPage.Inc()
			if ans.health != hp.ver {
				ans = a.rehealth(key, ans, hp)
			}
			writeAnswer(w, r, ans, cc)
			return
		}
		a.m.cacheMissPage.Inc()
		tok = a.cache.Begin()
	}
	ans, err := a.readPage(r.Context(), movie, limit, after, hp)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if cached && a.afterRead != nil {
		a.afterRead(key)
	}
	if cached && ans.prefix > 0 {
		a.cache.Put(tok, key, []string{movieScope(movie)}, ans, len(ans.body))
	}
	writeAnswer(w, r, ans, cc)
}

// readPage reads a page of a movie's reviews from the store and encodes
// it with health part hp. The answer's prefix and health are set when its
// health part can be spliced (every first page: see rehealth); only such
// an answer is cached.
func (a *API) readPage(ctx context.Context, movie string, limit int, after *store.Cursor, hp *healthPart) (*answer, error) {
	page, err := a.store.MovieReviews(ctx, movie, limit, after)
	if err != nil {
		return nil, err
	}
	out := ReviewList{MovieID: movie, Reviews: page.Reviews, LastUpdated: page.LastChanged, Stale: hp.stale, Providers: hp.providers}
	if page.Next != nil {
		c := encodeCursor(*page.Next)
		out.NextCursor = &c
	}
	body, err := jsonx.AppendUnescaped(nil, out)
	if err != nil {
		return nil, err
	}
	ans := &answer{body: body, etag: etagOf(body)}
	// Keep the health part apart, to splice in the next one.
	if bytes.HasSuffix(body, hp.tail[1:]) {
		ans.prefix, ans.health = len(body)-len(hp.tail)+1, hp.ver
	}
	return ans, nil
}

// rehealth is the cached answer old with health part p instead of its own,
// put in its place unless it was invalidated meanwhile.
func (a *API) rehealth(key string, old *answer, p *healthPart) *answer {
	body := make([]byte, 0, old.prefix+len(p.tail)-1)
	body = append(append(body, old.body[:old.prefix]...), p.tail[1:]...)
	ans := &answer{body: body, etag: etagOf(body), prefix: old.prefix, health: p.ver}
	a.cache.Swap(key, old, ans, len(body))
	return ans
}

func (a *API) review(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	key := "review\x00" + id
	cached := a.cache.Enabled()
	var tok cache.Token
	if cached {
		if ans, ok := a.cache.Get(key); ok {
			a.m.cacheHitReview.Inc()
			if ans.notFound {
				a.fail(w, r, store.ErrNotFound)
				return
			}
			writeAnswer(w, r, ans, a.reviewCC)
			return
		}
		a.m.cacheMissReview.Inc()
		tok = a.cache.Begin()
	}
	rv, err := a.store.Review(r.Context(), id)
	if cached && a.afterRead != nil && (err == nil || errors.Is(err, store.ErrNotFound)) {
		a.afterRead(key)
	}
	scopes := []string{reviewScope(id), reviewsScope}
	if errors.Is(err, store.ErrNotFound) && cached {
		a.cache.Put(tok, key, scopes, &answer{notFound: true}, 0)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	body, err := jsonx.AppendUnescaped(nil, rv)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ans := &answer{body: body, etag: etagOf(body)}
	if cached {
		a.cache.Put(tok, key, scopes, ans, len(body))
	}
	writeAnswer(w, r, ans, a.reviewCC)
}
