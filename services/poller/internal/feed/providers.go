package feed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Generic is the generic provider's API: updated_since (RFC 3339) + page.
type Generic struct{ c *Client }

// Name implements Feed.
func (*Generic) Name() string { return "generic" }

// DefaultPageSize implements Feed.
func (*Generic) DefaultPageSize() int { return 100 }

type genericPage struct {
	Events           []json.RawMessage `json:"events"`
	HasMore          bool              `json:"has_more"`
	NextUpdatedSince string            `json:"next_updated_since"`
}

// Changes implements Feed.
func (g *Generic) Changes(ctx context.Context, q Query) (Page, error) {
	v := url.Values{}
	switch {
	case q.From != "":
		v.Set("updated_since", q.From)
	case !q.Since.IsZero():
		v.Set("updated_since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	v.Set("page", strconv.Itoa(pageNo(q)))
	if q.Size > 0 {
		v.Set("page_size", strconv.Itoa(q.Size))
	}
	a, err := g.c.Get(ctx, "/providers/generic/v1/changes", v)
	if err != nil {
		return Page{Answer: a}, err
	}
	var p genericPage
	if err := decode(a, &p, "generic changes"); err != nil {
		return Page{Answer: a}, err
	}
	next := p.NextUpdatedSince
	if next != "" {
		t, err := time.Parse(time.RFC3339Nano, next)
		if err != nil {
			return Page{Answer: a}, fmt.Errorf("%w: next_updated_since %q is not RFC 3339", ErrBadAnswer, next)
		}
		next = t.UTC().Format(time.RFC3339Nano)
	} else if len(p.Events) > 0 || p.HasMore {
		return Page{Answer: a}, fmt.Errorf("%w: a page of changes without next_updated_since", ErrBadAnswer)
	} else {
		next = v.Get("updated_since")
	}
	nq := q
	nq.Page = pageNo(q) + 1
	return Page{Events: p.Events, Next: next, More: p.HasMore, NextQuery: nq, Answer: a}, nil
}

// Movie implements Feed.
func (g *Generic) Movie(ctx context.Context, movieID string, q Query) (Page, error) {
	v := url.Values{"page": {strconv.Itoa(pageNo(q))}}
	if q.Size > 0 {
		v.Set("page_size", strconv.Itoa(q.Size))
	}
	a, err := g.c.Get(ctx, "/providers/generic/v1/movies/"+url.PathEscape(movieID)+"/reviews", v)
	if err != nil {
		return Page{Answer: a}, err
	}
	var p genericPage
	if err := decode(a, &p, "generic movie reviews"); err != nil {
		return Page{Answer: a}, err
	}
	nq := q
	nq.Page = pageNo(q) + 1
	return Page{Events: p.Events, More: p.HasMore, NextQuery: nq, Answer: a}, nil
}

// Rewind implements Feed.
func (*Generic) Rewind(cursor string, overlap time.Duration) string {
	t, err := time.Parse(time.RFC3339Nano, cursor)
	if err != nil || overlap <= 0 {
		return cursor
	}
	t = t.Add(-overlap)
	if t.Year() < 1 {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Later implements Feed.
func (*Generic) Later(saved, next string) string {
	s, err1 := time.Parse(time.RFC3339Nano, saved)
	n, err2 := time.Parse(time.RFC3339Nano, next)
	if err1 == nil && err2 == nil && s.After(n) {
		return saved
	}
	if err2 != nil {
		return saved
	}
	return next
}

// CursorTime implements Feed.
func (*Generic) CursorTime(cursor string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, cursor)
	return t, err == nil
}

// Cinescore is cinescore's API: modifiedSince (epoch ms) + page, more pages
// while page < totalPages.
type Cinescore struct{ c *Client }

// Name implements Feed.
func (*Cinescore) Name() string { return "cinescore" }

// DefaultPageSize implements Feed.
func (*Cinescore) DefaultPageSize() int { return 100 }

type cinescorePage struct {
	Critiques         []json.RawMessage `json:"critiques"`
	Page              int               `json:"page"`
	TotalPages        int               `json:"totalPages"`
	NextModifiedSince *int64            `json:"nextModifiedSince"`
}

// Changes implements Feed.
func (cs *Cinescore) Changes(ctx context.Context, q Query) (Page, error) {
	v := url.Values{}
	switch {
	case q.From != "":
		v.Set("modifiedSince", q.From)
	case !q.Since.IsZero() && q.Since.UnixMilli() > 0:
		v.Set("modifiedSince", strconv.FormatInt(q.Since.UnixMilli(), 10))
	}
	v.Set("page", strconv.Itoa(pageNo(q)))
	if q.Size > 0 {
		v.Set("perPage", strconv.Itoa(q.Size))
	}
	a, err := cs.c.Get(ctx, "/providers/cinescore/api/v2/critiques", v)
	if err != nil {
		return Page{Answer: a}, err
	}
	var p cinescorePage
	if err := decode(a, &p, "cinescore critiques"); err != nil {
		return Page{Answer: a}, err
	}
	var next string
	switch {
	case p.NextModifiedSince != nil:
		next = strconv.FormatInt(*p.NextModifiedSince, 10)
	case len(p.Critiques) > 0:
		return Page{Answer: a}, fmt.Errorf("%w: a page of critiques without nextModifiedSince", ErrBadAnswer)
	default:
		next = v.Get("modifiedSince")
	}
	nq := q
	nq.Page = pageNo(q) + 1
	return Page{Events: p.Critiques, Next: next, More: pageNo(q) < p.TotalPages, NextQuery: nq, Answer: a}, nil
}

// Movie implements Feed.
func (cs *Cinescore) Movie(ctx context.Context, movieID string, q Query) (Page, error) {
	v := url.Values{"page": {strconv.Itoa(pageNo(q))}}
	if q.Size > 0 {
		v.Set("perPage", strconv.Itoa(min(q.Size, 200)))
	}
	a, err := cs.c.Get(ctx, "/providers/cinescore/api/v2/films/"+url.PathEscape(movieID)+"/critiques", v)
	if err != nil {
		return Page{Answer: a}, err
	}
	var p cinescorePage
	if err := decode(a, &p, "cinescore film critiques"); err != nil {
		return Page{Answer: a}, err
	}
	nq := q
	nq.Page = pageNo(q) + 1
	return Page{Events: p.Critiques, More: pageNo(q) < p.TotalPages, NextQuery: nq, Answer: a}, nil
}

// Rewind implements Feed.
func (*Cinescore) Rewind(cursor string, overlap time.Duration) string {
	ms, err := strconv.ParseInt(cursor, 10, 64)
	if err != nil || overlap <= 0 {
		return cursor
	}
	ms -= overlap.Milliseconds()
	if ms <= 0 {
		return ""
	}
	return strconv.FormatInt(ms, 10)
}

// Later implements Feed.
func (*Cinescore) Later(saved, next string) string {
	s, err1 := strconv.ParseInt(saved, 10, 64)
	n, err2 := strconv.ParseInt(next, 10, 64)
	if err2 != nil || (err1 == nil && s > n) {
		return saved
	}
	return next
}

// CursorTime implements Feed.
func (*Cinescore) CursorTime(cursor string) (time.Time, bool) {
	ms, err := strconv.ParseInt(cursor, 10, 64)
	return time.UnixMilli(ms).UTC(), err == nil
}

// Reelpulse is reelpulse's API: an opaque change token that reads every
// change after it exactly once, so it needs no overlap.
type Reelpulse struct{ c *Client }

// Name implements Feed.
func (*Reelpulse) Name() string { return "reelpulse" }

// DefaultPageSize implements Feed.
func (*Reelpulse) DefaultPageSize() int { return 100 }

// reelpulseStart is the layout of reelpulse's start parameter.
const reelpulseStart = "2006-01-02 15:04:05"

type reelpulsePage struct {
	Changes   []json.RawMessage `json:"changes"`
	NextToken *string           `json:"next_token"`
	HasMore   bool              `json:"has_more"`
}

// Changes implements Feed. Without a token it starts at q.Since (whole
// seconds, rounded down so nothing at that second is left out).
func (r *Reelpulse) Changes(ctx context.Context, q Query) (Page, error) {
	v := url.Values{}
	switch {
	case q.From != "":
		v.Set("token", q.From)
	case !q.Since.IsZero():
		v.Set("start", q.Since.UTC().Truncate(time.Second).Format(reelpulseStart))
	}
	if q.Size > 0 {
		v.Set("limit", strconv.Itoa(q.Size))
	}
	a, err := r.c.Get(ctx, "/providers/reelpulse/v3/changes", v)
	if err != nil {
		return Page{Answer: a}, err
	}
	var p reelpulsePage
	if err := decode(a, &p, "reelpulse changes"); err != nil {
		return Page{Answer: a}, err
	}
	if p.NextToken == nil || *p.NextToken == "" {
		return Page{Answer: a}, fmt.Errorf("%w: a page of changes without next_token", ErrBadAnswer)
	}
	return Page{Events: p.Changes, Next: *p.NextToken, More: p.HasMore,
		NextQuery: Query{From: *p.NextToken, Size: q.Size}, Answer: a}, nil
}

// Movie implements Feed.
func (r *Reelpulse) Movie(ctx context.Context, movieID string, q Query) (Page, error) {
	v := url.Values{}
	if q.From != "" {
		v.Set("token", q.From)
	}
	if q.Size > 0 {
		v.Set("limit", strconv.Itoa(q.Size))
	}
	a, err := r.c.Get(ctx, "/providers/reelpulse/v3/titles/"+url.PathEscape(movieID)+"/posts", v)
	if err != nil {
		return Page{Answer: a}, err
	}
	var p reelpulsePage
	if err := decode(a, &p, "reelpulse title posts"); err != nil {
		return Page{Answer: a}, err
	}
	pg := Page{Events: p.Changes, More: p.HasMore && p.NextToken != nil && *p.NextToken != "", Answer: a}
	if pg.More {
		pg.NextQuery = Query{From: *p.NextToken, Size: q.Size}
	}
	return pg, nil
}

// Rewind implements Feed: a change token is exact, there is nothing to rewind.
func (*Reelpulse) Rewind(cursor string, _ time.Duration) string { return cursor }

// Later implements Feed: tokens only move forward along the feed.
func (*Reelpulse) Later(saved, next string) string {
	if next == "" {
		return saved
	}
	return next
}

// CursorTime implements Feed: a token says no time.
func (*Reelpulse) CursorTime(string) (time.Time, bool) { return time.Time{}, false }
