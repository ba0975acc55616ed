package feed

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newTestClient(t *testing.T, h http.HandlerFunc, mut func(*ClientConfig)) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cfg := ClientConfig{BaseURL: srv.URL, APIKey: "secret-key-123", Timeout: 2 * time.Second, MaxBytes: 1 << 20, UserAgent: "test-agent"}
	if mut != nil {
		mut(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func TestClientSendsKeyAndReadsBudget(t *testing.T) {
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer secret-key-123" || r.Header.Get("User-Agent") != "test-agent" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-RateLimit-Limit", "20")
		w.Header().Set("X-RateLimit-Remaining", "7")
		w.Header().Set("X-RateLimit-Reset", "1")
		w.Write([]byte(`{"ok":true}`))
	}, nil)
	a, err := c.Get(context.Background(), "/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *a.Budget.Limit != 20 || *a.Budget.Remaining != 7 || string(a.Body) != `{"ok":true}` {
		t.Fatalf("answer %+v body %s", a.Budget, a.Body)
	}
}

func TestClientErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		h         http.HandlerFunc
		outcome   string
		fault     bool
		retryable bool
	}{
		{"429 with Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(429)
			w.Write([]byte(`{"error":"rate limit of 5 requests per second exceeded"}`))
		}, "rate_limited", false, true},
		{"503 down", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(503)
		}, "unavailable", true, true},
		{"500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, "server_error", true, true},
		{"401", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }, "client_error", false, false},
		{"410", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(410) }, "gone", false, false},
		{"body over the cap", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(strings.Repeat("x", 2<<20)))
		}, "too_large", false, false},
		{"slow answer", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
			}
		}, "timeout", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newTestClient(t, tc.h, func(c *ClientConfig) { c.Timeout = 300 * time.Millisecond })
			_, err := c.Get(context.Background(), "/x", nil)
			if got := Classify(err).String(); got != tc.outcome {
				t.Fatalf("outcome %q (%v), want %q", got, err, tc.outcome)
			}
			if o := Classify(err); o.ProviderFault() != tc.fault || o.Retryable() != tc.retryable {
				t.Fatalf("fault %v retryable %v, want %v %v", o.ProviderFault(), o.Retryable(), tc.fault, tc.retryable)
			}
			if strings.Contains(err.Error(), "secret-key-123") {
				t.Fatalf("error %q shows the API key", err)
			}
		})
	}
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(429)
		w.Write([]byte(`{"error":"rate limit of 5 requests per second exceeded"}`))
	}, nil)
	_, err := c.Get(context.Background(), "/x", nil)
	var se *StatusError
	if !errors.As(err, &se) || *se.RetryAfter != 2*time.Second || !strings.Contains(se.Error(), "rate limit of 5") {
		t.Fatalf("429: %#v", err)
	}
}

func TestClientRedirects(t *testing.T) {
	var leaked string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked = r.Header.Get("Authorization")
		w.Write([]byte(`{}`))
	}))
	defer other.Close()
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/final", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/final":
			if r.Header.Get("Authorization") == "" {
				w.WriteHeader(401)
			}
			w.Write([]byte(`{"final":true}`))
		}
	}, nil)
	if _, err := c.Get(context.Background(), "/away", nil); Classify(err) != Redirect || leaked != "" {
		t.Fatalf("redirect to another host: err %v, other host saw Authorization %q", err, leaked)
	}
	if a, err := c.Get(context.Background(), "/here", nil); err != nil || string(a.Body) != `{"final":true}` {
		t.Fatalf("redirect within the host: %v %s", err, a.Body)
	}
	if _, err := c.Get(context.Background(), "/loop", nil); Classify(err) != Redirect {
		t.Fatalf("redirect loop: %v", err)
	}
}

func TestGenericPaging(t *testing.T) {
	var queries []string
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.Path+"?"+r.URL.RawQuery)
		switch r.URL.Query().Get("page") {
		case "1":
			w.Write([]byte(`{"events":[{"type":"review.upserted","data":{"review_id":"a"}}],"page":1,"has_more":true,"next_updated_since":"2026-11-20T11:00:00.000001Z"}`))
		default:
			w.Write([]byte(`{"events":[],"page":2,"has_more":false,"next_updated_since":"2026-11-20T10:00:00Z"}`))
		}
	}, nil)
	g, _ := New("generic", c)
	p, err := g.Changes(context.Background(), Query{From: "2026-11-20T10:00:00Z", Page: 1, Size: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != 1 || string(p.Events[0]) != `{"type":"review.upserted","data":{"review_id":"a"}}` || !p.More ||
		p.Next != "2026-11-20T11:00:00.000001Z" || p.NextQuery.Page != 2 || p.NextQuery.From != "2026-11-20T10:00:00Z" {
		t.Fatalf("page 1: %+v", p)
	}
	p, err = g.Changes(context.Background(), p.NextQuery)
	if err != nil || p.More || len(p.Events) != 0 {
		t.Fatalf("page 2: %+v %v", p, err)
	}
	want := "/providers/generic/v1/changes?page=1&page_size=50&updated_since=2026-11-20T10%3A00%3A00Z"
	if queries[0] != want {
		t.Fatalf("query %q, want %q", queries[0], want)
	}
	// The saved cursor never moves back; the overlap rewinds it.
	if got := g.Later("2026-11-20T11:00:00Z", "2026-11-20T10:59:59Z"); got != "2026-11-20T11:00:00Z" {
		t.Fatalf("Later moved back to %s", got)
	}
	if got := g.Rewind("2026-11-20T11:00:00Z", 2*time.Second); got != "2026-11-20T10:59:58Z" {
		t.Fatalf("Rewind = %s", got)
	}
	if got := g.Rewind("", 2*time.Second); got != "" {
		t.Fatalf("Rewind of no cursor = %q", got)
	}
}

func TestCinescorePaging(t *testing.T) {
	var got []string
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path+"?"+r.URL.RawQuery)
		if r.URL.Path == "/providers/cinescore/api/v2/films/tt0068646/critiques" {
			w.Write([]byte(`{"critiques":[{"critiqueId":"cs-1"}],"page":1,"perPage":50,"totalPages":1,"totalCount":1}`))
			return
		}
		w.Write([]byte(`{"critiques":[{"critiqueId":"cs-1"},{"critiqueId":"cs-2"}],"page":1,"perPage":2,"totalPages":3,"totalCount":5,"nextModifiedSince":1763636399124}`))
	}, nil)
	f, _ := New("cinescore", c)
	p, err := f.Changes(context.Background(), Query{Since: time.UnixMilli(1763636000000), Size: 2})
	if err != nil || len(p.Events) != 2 || !p.More || p.Next != "1763636399124" || p.NextQuery.Page != 2 {
		t.Fatalf("%+v %v", p, err)
	}
	if got[0] != "/providers/cinescore/api/v2/critiques?modifiedSince=1763636000000&page=1&perPage=2" {
		t.Fatalf("query %s", got[0])
	}
	m, err := f.Movie(context.Background(), "tt0068646", Query{Page: 1})
	if err != nil || m.More || len(m.Events) != 1 {
		t.Fatalf("film: %+v %v", m, err)
	}
	if tm, ok := f.CursorTime("1763636399124"); !ok || tm.UnixMilli() != 1763636399124 {
		t.Fatalf("CursorTime %v %v", tm, ok)
	}
	if f.Rewind("1763636399124", 2*time.Second) != "1763636397124" || f.Later("10", "9") != "10" || f.Later("9", "10") != "10" {
		t.Fatal("Rewind or Later of epoch milliseconds")
	}
}

func TestReelpulseTokens(t *testing.T) {
	var got []string
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.RawQuery)
		switch r.URL.Query().Get("token") {
		case "":
			w.Write([]byte(`{"changes":[{"event":"post.published","post":{"uid":"rp_1"}}],"next_token":"tok1","has_more":true}`))
		case "tok1":
			w.Write([]byte(`{"changes":[],"next_token":"tok1","has_more":false}`))
		default:
			w.WriteHeader(410)
			w.Write([]byte(`{"error":"token is from an earlier feed"}`))
		}
	}, nil)
	f, _ := New("reelpulse", c)
	p, err := f.Changes(context.Background(), Query{Since: time.Date(2026, 11, 20, 10, 0, 0, 500, time.UTC)})
	if err != nil || p.Next != "tok1" || !p.More || p.NextQuery.From != "tok1" {
		t.Fatalf("%+v %v", p, err)
	}
	if got[0] != "start=2026-11-20+10%3A00%3A00" {
		t.Fatalf("start query %q", got[0])
	}
	p, err = f.Changes(context.Background(), p.NextQuery)
	if err != nil || p.More || p.Next != "tok1" {
		t.Fatalf("%+v %v", p, err)
	}
	if _, err := f.Changes(context.Background(), Query{From: "old"}); Classify(err) != Gone {
		t.Fatalf("old token: %v", err)
	}
	if f.Rewind("tok1", time.Hour) != "tok1" {
		t.Fatal("a token must not be rewound")
	}
}

func TestBadAnswers(t *testing.T) {
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`<html>`)) }, nil)
	for _, name := range Known() {
		f, _ := New(name, c)
		if _, err := f.Changes(context.Background(), Query{}); Classify(err) != BadAnswer {
			t.Errorf("%s: %v, want bad_answer", name, err)
		}
	}
}
