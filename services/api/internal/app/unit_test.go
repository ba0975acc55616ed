package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/api/internal/store"
)

func TestProviderViews(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	cfg := &Config{Providers: []string{"generic", "cinescore", "reelpulse"}, Objective: time.Minute,
		Objectives: map[string]time.Duration{"reelpulse": 5 * time.Minute}}
	for name, tc := range map[string]struct {
		rows  map[string]store.ProviderHealth
		want  string
		stale bool
	}{
		"no rows: all down": {nil, "cinescore:down generic:down reelpulse:down", true},
		"all fresh": {map[string]store.ProviderHealth{
			"generic":   {Status: "ok", LastSuccessAt: ago(10 * time.Second)},
			"cinescore": {Status: "ok", LastSuccessAt: ago(59 * time.Second)},
			"reelpulse": {Status: "ok", LastSuccessAt: ago(4 * time.Minute)},
		}, "cinescore:ok generic:ok reelpulse:ok", false},
		"past the objective is degraded": {map[string]store.ProviderHealth{
			"generic":   {Status: "ok", LastSuccessAt: ago(61 * time.Second)},
			"cinescore": {Status: "ok", LastSuccessAt: ago(time.Second)},
			"reelpulse": {Status: "ok", LastSuccessAt: ago(6 * time.Minute)},
		}, "cinescore:ok generic:degraded reelpulse:degraded", true},
		"the poller's worse status wins": {map[string]store.ProviderHealth{
			"generic":   {Status: "degraded", LastSuccessAt: ago(time.Second)},
			"cinescore": {Status: "down", LastSuccessAt: ago(time.Second)},
			"reelpulse": {Status: "ok"},
		}, "cinescore:down generic:degraded reelpulse:down", true},
		"extra provider listed": {map[string]store.ProviderHealth{
			"generic":   {Status: "ok", LastSuccessAt: ago(time.Second)},
			"cinescore": {Status: "ok", LastSuccessAt: ago(time.Second)},
			"reelpulse": {Status: "ok", LastSuccessAt: ago(time.Second)},
			"aaa":       {Status: "ok", LastSuccessAt: ago(time.Second)},
		}, "aaa:ok cinescore:ok generic:ok reelpulse:ok", false},
		"clock skew: a success in the future is fresh": {map[string]store.ProviderHealth{
			"generic":   {Status: "ok", LastSuccessAt: ago(-time.Minute)},
			"cinescore": {Status: "ok", LastSuccessAt: ago(time.Second)},
			"reelpulse": {Status: "ok", LastSuccessAt: ago(time.Second)},
		}, "cinescore:ok generic:ok reelpulse:ok", false},
	} {
		t.Run(name, func(t *testing.T) {
			vs := providerViews(cfg, tc.rows, now)
			var got []string
			for _, v := range vs {
				got = append(got, v.Name+":"+v.Status)
			}
			if g := strings.Join(got, " "); g != tc.want || anyStale(vs) != tc.stale {
				t.Fatalf("got %s stale %v, want %s stale %v", g, anyStale(vs), tc.want, tc.stale)
			}
		})
	}
}

func TestCursorRoundTrip(t *testing.T) {
	c := store.Cursor{SourceUpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC), ID: "generic:a/b c"}
	got, err := decodeCursor(encodeCursor(c))
	if err != nil || !got.SourceUpdatedAt.Equal(c.SourceUpdatedAt) || got.ID != c.ID {
		t.Fatalf("round trip %+v %v", got, err)
	}
	for _, bad := range []string{"", "!!", "bm90LWpzb24", "e30", strings.Repeat("A", 2000)} {
		if _, err := decodeCursor(bad); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(store.Cursor{SourceUpdatedAt: time.Now(), ID: "x:y"}))
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err == nil && (c.ID == "" || c.SourceUpdatedAt.IsZero()) {
			t.Fatalf("accepted an empty cursor from %q", s)
		}
	})
}

func TestClientLimiter(t *testing.T) {
	l := newClientLimiter(1, 2) // 1 per second, burst 2
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var got []string
	for i, at := range []time.Duration{0, 0, 0, 500 * time.Millisecond, time.Second, time.Second} {
		wait, ok := l.allow("a", now.Add(at))
		got = append(got, fmt.Sprintf("%d:%v:%s", i, ok, wait))
	}
	want := "0:true:0s 1:true:0s 2:false:1s 3:false:500ms 4:true:0s 5:false:1s"
	if g := strings.Join(got, " "); g != want {
		t.Fatalf("got  %s\nwant %s", g, want)
	}
	if _, ok := l.allow("b", now); !ok {
		t.Fatal("another client shares a's bucket")
	}
}

func TestIfNoneMatch(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{`"abc"`, true}, {`W/"abc"`, true}, {`"x", "abc"`, true}, {`*`, true}, {`"abd"`, false}, {``, false},
	} {
		if got := matches(tc.header, `"abc"`); got != tc.want {
			t.Errorf("If-None-Match %q: %v", tc.header, got)
		}
	}
}

// The provider_health rows are read once per HealthTTL, every time with a
// TTL of 0, and a failed read is not kept.
func TestHealthCache(t *testing.T) {
	reads := 0
	fail := false
	read := func(context.Context) (map[string]store.ProviderHealth, error) {
		reads++
		if fail {
			return nil, errors.New("postgres down")
		}
		return map[string]store.ProviderHealth{"generic": {}}, nil
	}
	var c healthCache
	for range 3 {
		if _, err := c.get(context.Background(), 0, read); err != nil {
			t.Fatal(err)
		}
	}
	if reads != 3 {
		t.Fatalf("TTL 0: %d reads for 3 answers, want 3", reads)
	}
	reads = 0
	for range 3 {
		if _, err := c.get(context.Background(), time.Hour, read); err != nil {
			t.Fatal(err)
		}
	}
	if reads != 1 {
		t.Fatalf("TTL 1h: %d reads for 3 answers, want 1", reads)
	}
	c.at = time.Now().Add(-2 * time.Hour) // expired
	fail = true
	if _, err := c.get(context.Background(), time.Hour, read); err == nil {
		t.Fatal("expired entry and a failing read: no error")
	}
	fail = false
	rows, err := c.get(context.Background(), time.Hour, read)
	if err != nil || len(rows) != 1 || reads != 3 {
		t.Fatalf("after a failed read: rows %v, err %v, %d reads; want a fresh read", rows, err, reads)
	}
}

// Past the TTL the rows held are answered at once while one read in the
// background takes new ones; a read that hangs holds up no answer; a
// failed one is tried again a quarter TTL later, not once per answer; past
// twice the TTL an answer reads the rows itself.
func TestHealthCacheReadsAheadInTheBackground(t *testing.T) {
	const ttl = 2 * time.Second
	var mu sync.Mutex
	reads, fail := 0, false
	release := make(chan struct{})
	hang := false
	read := func(context.Context) (map[string]store.ProviderHealth, error) {
		mu.Lock()
		reads++
		n, f, h := reads, fail, hang
		mu.Unlock()
		if h {
			<-release
		}
		if f {
			return nil, errors.New("postgres down")
		}
		return map[string]store.ProviderHealth{fmt.Sprint(n): {}}, nil
	}
	readsNow := func() int { mu.Lock(); defer mu.Unlock(); return reads }
	var c healthCache
	ctx := context.Background()
	_, v1, err := c.getVersioned(ctx, ttl, read)
	if err != nil || readsNow() != 1 {
		t.Fatalf("first answer: %v, %d reads; want one read, at once", err, readsNow())
	}

	// Expired, the next read hangs: answers go on with the rows held.
	mu.Lock()
	hang = true
	mu.Unlock()
	c.mu.Lock()
	c.at = time.Now().Add(-ttl - time.Millisecond)
	c.mu.Unlock()
	start := time.Now()
	for range 50 {
		rows, v, err := c.getVersioned(ctx, ttl, read)
		if _, ok := rows["1"]; err != nil || v != v1 || len(rows) != 1 || !ok {
			t.Fatalf("while the read hangs: rows %v, version %d (held %d), %v", rows, v, v1, err)
		}
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Fatalf("50 answers took %v while the background read hung", took)
	}
	waitFor(t, func() bool { return readsNow() >= 2 })
	if n := readsNow(); n != 2 {
		t.Fatalf("%d reads, want the first and one in the background", n)
	}
	close(release)
	waitFor(t, func() bool { _, v, _ := c.getVersioned(ctx, ttl, read); return v == v1+1 })
	rows, _, _ := c.getVersioned(ctx, ttl, read)
	if _, ok := rows["2"]; !ok {
		t.Fatalf("after the background read: rows %v, want its rows", rows)
	}

	// A failing table: tried again no sooner than a quarter TTL.
	mu.Lock()
	hang, fail = false, true
	mu.Unlock()
	c.mu.Lock()
	c.at, c.tried = time.Now().Add(-ttl-time.Millisecond), time.Time{}
	c.mu.Unlock()
	before := readsNow()
	for range 20 {
		if _, _, err := c.getVersioned(ctx, ttl, read); err != nil {
			t.Fatalf("inside twice the TTL, a failing background read failed an answer: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return !c.refreshing })
	if n := readsNow() - before; n != 1 {
		t.Fatalf("%d background reads in 20 answers of a failing table, want 1 (a quarter TTL apart)", n)
	}

	// Past twice the TTL an answer reads itself, and fails with the read.
	c.mu.Lock()
	c.at = time.Now().Add(-2 * ttl)
	c.tried = time.Time{}
	c.mu.Unlock()
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return !c.refreshing })
	if _, _, err := c.getVersioned(ctx, ttl, read); err == nil {
		t.Fatal("rows twice the TTL old and a failing table: no error")
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5 s")
}

// Answers are encoded by jsonx: byte for byte what encoding/json's Encoder
// with SetEscapeHTML(false) writes, so ETags stay those of the same answer.
func TestAnswerEncodingIsEncodingJSONs(t *testing.T) {
	at := time.Date(2026, 11, 23, 9, 0, 0, 123456789, time.UTC)
	rating, next := 85, "eyJ0IjoiMjAyNi0xMS0yM1QwOTowMDowMFoiLCJpIjoiYSJ9"
	for _, v := range []any{
		ReviewList{MovieID: "tt0111161", Reviews: []review.Review{{ID: "generic:a", Provider: "generic", ExternalID: "a",
			MovieID: "tt0111161", Author: "A <b>&amp;</b>", Rating: &rating, Title: "T\u2028\u2029", Body: "é\u00a0\n\t\"\\",
			Language: "en-US", URL: "https://x.example/?a=1&b=<2>", Version: 3, SourceUpdatedAt: at, IngestedAt: at}, {ID: "generic:b"}},
			NextCursor: &next, LastUpdated: &at, Stale: true, Providers: []ProviderStatus{{}}},
		ReviewList{Reviews: []review.Review{}},
		map[string]any{"z": 1, "a": []string{"<", ">"}, "m": nil},
	} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		got, err := jsonx.AppendUnescaped(nil, v)
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("jsonx wrote\n%s(%v)\nencoding/json writes\n%s", got, err, want.Bytes())
		}
	}
}
