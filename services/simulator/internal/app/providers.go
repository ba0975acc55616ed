package app

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/catalog"
)

// The polling APIs of docs/providers.md, each behind guard.
func (a *App) providerRoutes(mux *http.ServeMux) {
	for _, name := range a.names {
		s := a.sims[name]
		for pattern, h := range pollingAPIs[name](a, s) {
			mux.Handle(pattern, a.guard(s, h))
		}
	}
}

// pollingAPIs are the providers' polling APIs, by name: each gives its
// handlers by route pattern (its change feed and its listing of one
// movie). A test fails while a registered provider has none.
var pollingAPIs = map[string]func(a *App, s *sim) map[string]http.HandlerFunc{
	"generic": func(a *App, s *sim) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{
			"/providers/generic/v1/changes":                  a.genericChanges(s),
			"/providers/generic/v1/movies/{imdb_id}/reviews": a.genericMovie(s),
		}
	},
	"cinescore": func(a *App, s *sim) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{
			"/providers/cinescore/api/v2/critiques":              a.cinescoreChanges(s),
			"/providers/cinescore/api/v2/films/{imdb}/critiques": a.cinescoreFilm(s),
		}
	},
	"reelpulse": func(a *App, s *sim) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{
			"/providers/reelpulse/v3/changes":             a.reelpulseChanges(s),
			"/providers/reelpulse/v3/titles/{imdb}/posts": a.reelpulseTitle(s),
		}
	},
}

// badParam is a query parameter error, answered 400.
type badParam struct{ msg string }

func (e badParam) Error() string { return e.msg }

// intParam reads an integer parameter of at least lo; values above hi are
// lowered to hi.
func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo {
		return 0, badParam{fmt.Sprintf("%s=%q must be an integer >= %d", name, v, lo)}
	}
	return min(n, hi), nil
}

func movieParam(r *http.Request, name string) (string, error) {
	m := r.PathValue(name)
	if !review.ValidMovieID(m) {
		return "", badParam{fmt.Sprintf("%q is not an IMDb id (tt + 7 to 10 digits)", m)}
	}
	return m, nil
}

func events(es []catalog.Entry) []json.RawMessage {
	out := make([]json.RawMessage, len(es))
	for i, e := range es {
		out[i] = e.Event
	}
	return out
}

func pageOf(es []catalog.Entry, page, size int) ([]catalog.Entry, bool) {
	lo := min((page-1)*size, len(es))
	hi := min(lo+size, len(es))
	return es[lo:hi], hi < len(es)
}

// handle runs f and answers its badParam as 400.
func handle(f func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			obs.WriteError(w, http.StatusBadRequest, err.Error())
		}
	}
}

const maxPage = 1_000_000_000

type genericPage struct {
	Events           []json.RawMessage `json:"events"`
	Page             int               `json:"page"`
	PageSize         int               `json:"page_size"`
	HasMore          bool              `json:"has_more"`
	NextUpdatedSince string            `json:"next_updated_since,omitempty"`
}

func (a *App) genericChanges(s *sim) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		var since time.Time
		if v := q.Get("updated_since"); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return badParam{fmt.Sprintf("updated_since=%q is not an RFC 3339 time", v)}
			}
			since = t.UTC()
		}
		page, err := intParam(q, "page", 1, 1, maxPage)
		if err != nil {
			return err
		}
		size, err := intParam(q, "page_size", 100, 1, 500)
		if err != nil {
			return err
		}
		movie := q.Get("movie_id")
		if movie != "" && !review.ValidMovieID(movie) {
			return badParam{fmt.Sprintf("movie_id=%q is not an IMDb id (tt + 7 to 10 digits)", movie)}
		}
		es, total, wm := s.cat.Page(since, movie, (page-1)*size, size)
		next := since
		if !wm.IsZero() {
			next = wm.Add(s.cat.Tick())
		}
		obs.WriteJSON(w, http.StatusOK, genericPage{
			Events: events(es), Page: page, PageSize: size, HasMore: total > page*size,
			NextUpdatedSince: next.UTC().Format(time.RFC3339Nano),
		})
		return nil
	})
}

func (a *App) genericMovie(s *sim) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		movie, err := movieParam(r, "imdb_id")
		if err != nil {
			return err
		}
		q := r.URL.Query()
		page, err := intParam(q, "page", 1, 1, maxPage)
		if err != nil {
			return err
		}
		size, err := intParam(q, "page_size", 100, 1, 500)
		if err != nil {
			return err
		}
		es, more := pageOf(s.cat.Current(movie), page, size)
		obs.WriteJSON(w, http.StatusOK, genericPage{Events: events(es), Page: page, PageSize: size, HasMore: more})
		return nil
	})
}

type cinescorePage struct {
	Critiques         []json.RawMessage `json:"critiques"`
	Page              int               `json:"page"`
	PerPage           int               `json:"perPage"`
	TotalPages        int               `json:"totalPages"`
	TotalCount        int               `json:"totalCount"`
	NextModifiedSince *int64            `json:"nextModifiedSince,omitempty"`
}

func cinescorePaging(q url.Values) (page, per int, err error) {
	if page, err = intParam(q, "page", 1, 1, maxPage); err != nil {
		return 0, 0, err
	}
	per, err = intParam(q, "perPage", 50, 1, 200)
	return page, per, err
}

func (a *App) cinescoreChanges(s *sim) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		var since int64
		if v := q.Get("modifiedSince"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return badParam{fmt.Sprintf("modifiedSince=%q must be epoch milliseconds (an integer >= 0)", v)}
			}
			since = n
		}
		page, per, err := cinescorePaging(q)
		if err != nil {
			return err
		}
		es, total, wm := s.cat.Page(time.UnixMilli(since), "", (page-1)*per, per)
		next := since
		if !wm.IsZero() {
			next = wm.UnixMilli() + 1
		}
		obs.WriteJSON(w, http.StatusOK, cinescorePage{
			Critiques: events(es), Page: page, PerPage: per,
			TotalPages: (total + per - 1) / per, TotalCount: total, NextModifiedSince: &next,
		})
		return nil
	})
}

func (a *App) cinescoreFilm(s *sim) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		movie, err := movieParam(r, "imdb")
		if err != nil {
			return err
		}
		page, per, err := cinescorePaging(r.URL.Query())
		if err != nil {
			return err
		}
		all := s.cat.Current(movie)
		es, _ := pageOf(all, page, per)
		obs.WriteJSON(w, http.StatusOK, cinescorePage{
			Critiques: events(es), Page: page, PerPage: per,
			TotalPages: (len(all) + per - 1) / per, TotalCount: len(all),
		})
		return nil
	})
}

type reelpulsePage struct {
	Changes   []json.RawMessage `json:"changes"`
	NextToken *string           `json:"next_token"`
	HasMore   bool              `json:"has_more"`
}

// Reelpulse tokens are opaque to clients: base64url of "<kind>.<epoch>.<n>".
// The epoch is the simulator process's, so a token from before a restart
// (whose feed is gone) is answered 410 rather than misread.
const (
	tokenFeed  = "f"
	tokenTitle = "t"
)

func (a *App) encodeToken(s *sim, kind string, n int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + "." + s.epoch + "." + strconv.FormatInt(n, 10)))
}

// errGone is a token of another simulator run.
type errGone struct{}

func (errGone) Error() string {
	return "token is from an earlier feed that no longer exists (the provider restarted): start again without a token"
}

func (a *App) decodeToken(s *sim, kind, tok string) (int64, error) {
	bad := badParam{fmt.Sprintf("token %q is not a token this API gave out", tok)}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, bad
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 3 || parts[0] != kind {
		return 0, bad
	}
	n, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || n < 0 {
		return 0, bad
	}
	if parts[1] != s.epoch {
		return 0, errGone{}
	}
	return n, nil
}

func reelpulseLimit(q url.Values) (int, error) { return intParam(q, "limit", 100, 1, 500) }

func (a *App) reelpulseChanges(s *sim) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit, err := reelpulseLimit(q)
		if err != nil {
			obs.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		var seq int64
		switch tok, start := q.Get("token"), q.Get("start"); {
		case tok != "":
			seq, err = a.decodeToken(s, tokenFeed, tok)
			if _, gone := err.(errGone); gone {
				obs.WriteError(w, http.StatusGone, err.Error())
				return
			}
			if err == nil && seq > s.cat.Len() {
				err = badParam{fmt.Sprintf("token %q points past the end of the feed", tok)}
			}
		case start != "":
			var t time.Time
			if t, err = time.ParseInLocation(provider.ReelpulseTimeLayout, start, time.UTC); err != nil {
				err = badParam{fmt.Sprintf("start=%q is not a UTC time like %q", start, provider.ReelpulseTimeLayout)}
			} else {
				seq = s.cat.SeqBefore(t)
			}
		}
		if err != nil {
			obs.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		es, more := s.cat.After(seq, limit)
		if len(es) > 0 {
			seq = es[len(es)-1].Seq
		}
		next := a.encodeToken(s, tokenFeed, seq)
		obs.WriteJSON(w, http.StatusOK, reelpulsePage{Changes: events(es), NextToken: &next, HasMore: more})
	}
}

func (a *App) reelpulseTitle(s *sim) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		movie, err := movieParam(r, "imdb")
		if err != nil {
			return err
		}
		q := r.URL.Query()
		limit, err := reelpulseLimit(q)
		if err != nil {
			return err
		}
		var offset int64
		if tok := q.Get("token"); tok != "" {
			if offset, err = a.decodeToken(s, tokenTitle, tok); err != nil {
				return err // a listing token of an earlier run is simply invalid here
			}
		}
		all := s.cat.Current(movie)
		lo := min(int(min(offset, int64(len(all)))), len(all))
		hi := min(lo+limit, len(all))
		page := reelpulsePage{Changes: events(all[lo:hi]), HasMore: hi < len(all)}
		if page.HasMore {
			next := a.encodeToken(s, tokenTitle, int64(hi))
			page.NextToken = &next
		}
		obs.WriteJSON(w, http.StatusOK, page)
		return nil
	})
}
