package app

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
	"github.com/reviewpipe/reviewpipe/services/api/internal/store"
)

// httpError is an error with the status it answers.
type httpError struct {
	status     int
	msg        string
	retryAfter int
}

func (e *httpError) Error() string { return e.msg }

func badRequest(msg string) error { return &httpError{status: http.StatusBadRequest, msg: msg} }

// fail maps err to its answer, in one place, and logs server-side
// failures once.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
	case errors.Is(err, store.ErrNotFound):
		he = &httpError{status: http.StatusNotFound, msg: "no such review"}
	case r.Context().Err() != nil:
		return // the client went away
	case pgstore.IsUnavailable(err):
		he = &httpError{status: http.StatusServiceUnavailable, retryAfter: 2, msg: "the store is unavailable; retry shortly"}
	default:
		he = &httpError{status: http.StatusInternalServerError, msg: "internal error"}
	}
	if he.status >= 500 {
		a.log.Warn("request failed", zap.String("route", r.Pattern), zap.Int("status", he.status), zap.Error(err))
	}
	if he.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(he.retryAfter))
	}
	w.Header().Set("Cache-Control", "no-store")
	obs.WriteError(w, he.status, he.msg)
}

// etagOf is a strong validator: the hash of the answer's bytes.
func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}

// matches reports whether an If-None-Match header names etag (weak
// comparison, RFC 9110 §13.1.2).
func matches(ifNoneMatch, etag string) bool {
	for _, c := range strings.Split(ifNoneMatch, ",") {
		c = strings.TrimPrefix(strings.TrimSpace(c), "W/")
		if c == "*" || c == etag {
			return true
		}
	}
	return false
}

// writeCached answers a GET with body, its ETag and cacheControl, or 304
// when the client's If-None-Match already names that ETag.
func writeCached(w http.ResponseWriter, r *http.Request, contentType string, body []byte, cacheControl string) {
	writeTagged(w, r, contentType, body, etagOf(body), cacheControl)
}

// writeAnswer writes a JSON answer whose ETag is known.
func writeAnswer(w http.ResponseWriter, r *http.Request, ans *answer, cacheControl string) {
	writeTagged(w, r, "application/json", ans.body, ans.etag, cacheControl)
}

func writeTagged(w http.ResponseWriter, r *http.Request, contentType string, body []byte, etag, cacheControl string) {
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", cacheControl)
	h.Set("Vary", "Accept-Encoding")
	if inm := r.Header.Get("If-None-Match"); inm != "" && matches(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func (a *API) writeJSON(w http.ResponseWriter, r *http.Request, v any, cacheControl string) {
	body, err := jsonx.AppendUnescaped(nil, v)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeCached(w, r, "application/json", body, cacheControl)
}

// cacheControl for reads of the store: shared caches may serve an answer
// for maxAge, and a stale one while they revalidate; changes reach the
// store within seconds of the provider, so longer would hide them.
func publicCache(maxAge time.Duration) string {
	s := int(maxAge / time.Second)
	return "public, max-age=" + strconv.Itoa(s) + ", stale-while-revalidate=" + strconv.Itoa(max(1, 2*s))
}

// jsonFallback answers what no route matched with a JSON error: 404, or
// 405 with Allow when the path exists for other methods.
type jsonFallback struct{ http.ResponseWriter }

func (j *jsonFallback) WriteHeader(code int) {
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		msg := "no such resource"
		if code == http.StatusMethodNotAllowed {
			msg = "method not allowed; allowed: " + j.Header().Get("Allow")
		}
		j.Header().Del("X-Content-Type-Options")
		obs.WriteError(j.ResponseWriter, code, msg)
		j.ResponseWriter = discard{j.ResponseWriter}
		return
	}
	j.ResponseWriter.WriteHeader(code)
}

type discard struct{ http.ResponseWriter }

func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
