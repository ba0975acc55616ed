package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/api/internal/store"
)

// docs/contract.md §8: an IPv4 client is its address, an IPv6 client its /64.
func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"198.51.100.7", "198.51.100.7"},
		{"::ffff:198.51.100.7", "198.51.100.7"},
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	} {
		if got := clientKey(netip.MustParseAddr(tc.a)); got != tc.b {
			t.Errorf("clientKey(%s) = %s, want %s", tc.a, got, tc.b)
		}
	}
	same := []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:abcd::9"}
	for _, s := range same {
		if clientKey(netip.MustParseAddr(s)) != clientKey(netip.MustParseAddr(same[0])) {
			t.Errorf("%s and %s are in one /64 but keyed apart", s, same[0])
		}
	}
	if clientKey(netip.MustParseAddr("2001:db8:1:2::1")) == clientKey(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("two /64s share a key")
	}
	if clientKey(netip.MustParseAddr("198.51.100.7")) == clientKey(netip.MustParseAddr("198.51.100.8")) {
		t.Error("two IPv4 addresses share a key")
	}
}

// X-Forwarded-For counts only from TRUSTED_PROXIES, and then only its
// rightmost hop that is not itself a trusted proxy.
func TestClientAddr(t *testing.T) {
	proxies, err := parseTrustedProxies([]string{"10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no header", "203.0.113.9:5000", nil, "203.0.113.9"},
		{"untrusted peer: header ignored", "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"trusted peer", "10.1.2.3:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"bare trusted address", "192.0.2.1:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"a host next to the bare address is not trusted", "192.0.2.2:5000", []string{"198.51.100.1"}, "192.0.2.2"},
		{"rightmost untrusted hop, spoofed left part ignored", "10.1.2.3:5000", []string{"1.1.1.1, 198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"several headers in order", "10.1.2.3:5000", []string{"1.1.1.1", "198.51.100.1"}, "198.51.100.1"},
		{"all trusted: the leftmost", "10.1.2.3:5000", []string{"10.4.4.4, 10.5.5.5"}, "10.4.4.4"},
		{"trusted peer, no header", "10.1.2.3:5000", nil, "10.1.2.3"},
		{"malformed hop ends at the trusted hop after it", "10.1.2.3:5000", []string{"198.51.100.1, garbage, 10.7.7.7"}, "10.7.7.7"},
		{"malformed last hop: the peer", "10.1.2.3:5000", []string{"198.51.100.1, garbage"}, "10.1.2.3"},
		{"hop with a port", "10.1.2.3:5000", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"IPv6 peer, IPv6 client", "[2001:db8:ffff::1]:5000", []string{"2001:db8:1:2::7"}, "2001:db8:1:2::7"},
		{"IPv4-mapped peer", "[::ffff:10.1.2.3]:5000", []string{"198.51.100.1"}, "198.51.100.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got, ok := clientAddr(r, proxies)
			if !ok || got.String() != tc.want {
				t.Fatalf("clientAddr = %s %v, want %s", got, ok, tc.want)
			}
		})
	}
	// Nothing trusted (the default): the peer, whatever the header says.
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr, r.Header["X-Forwarded-For"] = "10.1.2.3:5000", []string{"198.51.100.1"}
	if got, _ := clientAddr(r, nil); got.String() != "10.1.2.3" {
		t.Fatalf("with no trusted proxies: %s", got)
	}
	if _, err := parseTrustedProxies([]string{"10.0.0.0/33"}); err == nil || !strings.Contains(err.Error(), "TRUSTED_PROXIES") {
		t.Fatalf("a bad CIDR: %v", err)
	}
}

func TestStreamLimiter(t *testing.T) {
	l := &streamLimiter{perClient: 2, max: 3}
	steps := []struct {
		client, want string
	}{{"a", ""}, {"a", ""}, {"a", refusedPerClient}, {"b", ""}, {"c", refusedGlobal}, {"b", refusedGlobal}}
	for i, s := range steps {
		if got := l.acquire(s.client); got != s.want {
			t.Fatalf("step %d (%s): %q, want %q", i, s.client, got, s.want)
		}
	}
	l.release("a")
	if got := l.acquire("c"); got != "" {
		t.Fatalf("after a release: %q", got)
	}
	if got := l.acquire("a"); got != refusedGlobal {
		t.Fatalf("full again: %q", got)
	}
	for _, c := range []string{"a", "b", "c"} {
		l.release(c)
	}
	if l.total != 0 || len(l.open) != 0 {
		t.Fatalf("after releasing all: total %d, open %v", l.total, l.open)
	}
}

// wantRefused checks a refused stream: the status, a Retry-After of at
// least 1 and a JSON error.
func wantRefused(t *testing.T, s *sseClient, code int) {
	t.Helper()
	if s.res.StatusCode != code {
		s.close()
		t.Fatalf("stream answered %d, want %d", s.res.StatusCode, code)
	}
	b, _ := io.ReadAll(s.res.Body)
	if ra, err := strconv.Atoi(s.res.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", s.res.Header.Get("Retry-After"))
	}
	if s.res.Header.Get("Content-Type") != "application/json" || decode[map[string]string](t, b)["error"] == "" {
		t.Fatalf("not a JSON error: %s", b)
	}
}

// readsAnswer checks that a read of the store answers 200 within d.
func readsAnswer(t *testing.T, url string, d time.Duration) {
	t.Helper()
	for range 5 {
		start := time.Now()
		code, _, b := get(t, "GET", url+"/v1/movies/tt0111161/reviews", nil)
		if code != http.StatusOK {
			t.Fatalf("read answered %d: %s", code, b)
		}
		if took := time.Since(start); took > d {
			t.Fatalf("read took %s, want under %s", took, d)
		}
	}
}

// docs/contract.md §8: a flood of event streams from one client is refused past
// SSE_MAX_PER_CLIENT (429 + Retry-After) while reads and another client's
// stream still answer; exactly 20 open, the 21st refused, one more accepted
// once one closes; past SSE_MAX in all, 503.
func TestEventStreamCaps(t *testing.T) {
	f := newFixture(t, Config{SSEMax: 30, TrustedProxies: []string{"127.0.0.1/32"}})
	f.insert(t, mkReview("generic", "cap1", "tt0111161", 1))
	events := f.url + "/v1/movies/tt0111161/events"
	const flooder = "198.51.100.7"

	// 60 at once from one client: exactly SSE_MAX_PER_CLIENT stay open.
	var (
		mu         sync.Mutex
		open, shut []*sseClient
		wg         sync.WaitGroup
	)
	for range 60 {
		wg.Go(func() {
			s := openStreamFrom(t, events, flooder)
			mu.Lock()
			defer mu.Unlock()
			if s.res.StatusCode == http.StatusOK {
				open = append(open, s)
			} else {
				shut = append(shut, s)
			}
		})
	}
	wg.Wait()
	if len(open) != 20 || len(shut) != 40 {
		t.Fatalf("%d streams open, %d refused; want 20 and 40", len(open), len(shut))
	}
	for _, s := range shut {
		wantRefused(t, s, http.StatusTooManyRequests)
	}
	for _, s := range open {
		if m := s.next(t, 5*time.Second); m.event != "ready" {
			t.Fatalf("an open stream's first event is %q", m.event)
		}
	}
	// The 21st, alone, is refused too; reads and another client answer.
	wantRefused(t, openStreamFrom(t, events, flooder), http.StatusTooManyRequests)
	readsAnswer(t, f.url, time.Second)
	other := openStreamFrom(t, events, "198.51.100.8")
	if other.res.StatusCode != http.StatusOK || other.next(t, 5*time.Second).event != "ready" {
		t.Fatalf("another client's stream: %d", other.res.StatusCode)
	}
	if n := testutil.ToFloat64(f.api.m.sseRefused.WithLabelValues(refusedPerClient)); n != 41 {
		t.Fatalf("refused per client: %v, want 41", n)
	}
	if n := testutilGauge(f.api); n != 21 {
		t.Fatalf("open streams gauge %v, want 21", n)
	}

	// One closes: the client may open one more, and no more than that.
	open[0].close()
	testenv.Eventually(t, 10*time.Second, func() error {
		s := openStreamFrom(t, events, flooder)
		if s.res.StatusCode != http.StatusOK {
			s.close()
			return fmt.Errorf("after one closed, a new stream answered %d", s.res.StatusCode)
		}
		return nil
	})
	wantRefused(t, openStreamFrom(t, events, flooder), http.StatusTooManyRequests)

	// SSE_MAX (30) in all: 21 open, 9 more from other clients, then 503.
	for i := range 9 {
		if s := openStreamFrom(t, events, fmt.Sprintf("203.0.113.%d", i+1)); s.res.StatusCode != http.StatusOK {
			t.Fatalf("stream %d of 30: %d", 22+i, s.res.StatusCode)
		}
	}
	wantRefused(t, openStreamFrom(t, events, "203.0.113.200"), http.StatusServiceUnavailable)
	if n := testutil.ToFloat64(f.api.m.sseRefused.WithLabelValues(refusedGlobal)); n != 1 {
		t.Fatalf("refused in all: %v, want 1", n)
	}
	readsAnswer(t, f.url, time.Second)
}

// docs/contract.md §8: an IPv6 client is its /64: two addresses of one /64 share
// the cap, another /64 does not; X-Forwarded-For from an untrusted peer
// names no one.
func TestEventStreamCapIPv6AndUntrustedProxies(t *testing.T) {
	f := newFixture(t, Config{SSEMaxPerClient: 3, TrustedProxies: []string{"127.0.0.1"}})
	events := f.url + "/v1/movies/tt0111161/events"
	for i := range 3 {
		if s := openStreamFrom(t, events, fmt.Sprintf("2001:db8:1:2::%x", i+1)); s.res.StatusCode != http.StatusOK {
			t.Fatalf("stream %d of the /64: %d", i+1, s.res.StatusCode)
		}
	}
	wantRefused(t, openStreamFrom(t, events, "2001:db8:1:2:ffff::1"), http.StatusTooManyRequests)
	if s := openStreamFrom(t, events, "2001:db8:1:3::1"); s.res.StatusCode != http.StatusOK {
		t.Fatalf("another /64: %d", s.res.StatusCode)
	}

	// The same API trusting another network's proxies: every stream is
	// 127.0.0.1's, whatever its X-Forwarded-For says.
	_, srv := serve(t, Config{SSEMaxPerClient: 3, TrustedProxies: []string{"10.0.0.0/8"}, Brokers: f.st.Brokers, Names: f.st.Names}, store.New(f.st.DB), nil, f.st.DatabaseURL, f.st.Brokers)
	for i := range 3 {
		if s := openStreamFrom(t, srv.URL+"/v1/movies/tt0111161/events", fmt.Sprintf("198.51.100.%d", i+1)); s.res.StatusCode != http.StatusOK {
			t.Fatalf("untrusted stream %d: %d", i+1, s.res.StatusCode)
		}
	}
	wantRefused(t, openStreamFrom(t, srv.URL+"/v1/movies/tt0111161/events", "198.51.100.99"), http.StatusTooManyRequests)
}

// docs/contract.md §8: a stream whose reader stops reading is closed within
// SSE_WRITE_TIMEOUT, while events keep coming.
func TestStalledReaderIsClosed(t *testing.T) {
	const timeout = time.Second
	f := newFixture(t, Config{SSEWriteTimeout: timeout, Heartbeat: time.Hour})
	const movie = "tt0111161"
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /v1/movies/%s/events HTTP/1.1\r\nHost: x\r\n\r\n", movie); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := testutilGauge(f.api); n != 1 {
			return fmt.Errorf("%v streams open", n)
		}
		return nil
	})
	// The client reads nothing from here on. 64 events of 256 KiB (16 MiB)
	// fill any socket buffer many times over.
	data := []byte(`"` + strings.Repeat("x", 256<<10) + `"`)
	start := time.Now()
	for range 64 {
		f.api.hub.publish(movie, sseEvent{name: "review", data: data})
	}
	testenv.Eventually(t, timeout+5*time.Second, func() error {
		if n := testutilGauge(f.api); n != 0 {
			return fmt.Errorf("%v streams still open %s after the events", n, time.Since(start).Round(time.Millisecond))
		}
		return nil
	})
	took := time.Since(start)
	t.Logf("a reader that stopped reading was closed %s after 16 MiB of events (SSE_WRITE_TIMEOUT %s)", took.Round(time.Millisecond), timeout)
	if n := testutil.ToFloat64(f.api.m.sseClosed); n != 1 {
		t.Fatalf("write failures %v, want 1", n)
	}
	// The client sees its connection end: reading drains what the kernel
	// buffered, then EOF or a reset, not an open stream.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the connection is still open")
	}
	readsAnswer(t, f.url, time.Second)
}

// postFrom posts a refresh of movie with X-Forwarded-For: client (none when
// empty) and returns the status and headers.
func postFrom(t *testing.T, base, movie, client string) (int, http.Header, []byte) {
	t.Helper()
	h := map[string]string{}
	if client != "" {
		h["X-Forwarded-For"] = client
	}
	return get(t, "POST", base+"/v1/movies/"+movie+"/refresh", h)
}

// docs/contract.md §8: the per-client refresh limit keys on the client address (an
// IPv6 client is its /64), X-Forwarded-For only from TRUSTED_PROXIES.
func TestRefreshPerClientKeying(t *testing.T) {
	f := newFixture(t, Config{RefreshRate: 0.001, RefreshBurst: 2, TrustedProxies: []string{"127.0.0.1/32"}})
	movie := 0
	next := func() string { movie++; return fmt.Sprintf("tt%07d", 1000000+movie) }
	for _, step := range []struct {
		client string
		code   int
	}{
		{"2001:db8:a:b::1", 202}, {"2001:db8:a:b::1", 202},
		{"2001:db8:a:b::2", 429}, // same /64, burst spent
		{"2001:db8:a:c::1", 202}, // another /64
		{"198.51.100.1", 202}, {"198.51.100.1", 202}, {"198.51.100.1", 429},
		{"198.51.100.2", 202},
		{"1.1.1.1, 198.51.100.3", 202}, {"9.9.9.9, 198.51.100.3", 202}, // the spoofed left part is not the key
		{"198.51.100.3", 429},
	} {
		code, h, b := postFrom(t, f.url, next(), step.client)
		if code != step.code {
			t.Fatalf("refresh from %s: %d, want %d: %s", step.client, code, step.code, b)
		}
		if code == 429 && h.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}

	// A peer outside TRUSTED_PROXIES: X-Forwarded-For is ignored, every
	// request is 127.0.0.1's.
	_, srv := serve(t, Config{RefreshRate: 0.001, RefreshBurst: 2, TrustedProxies: []string{"10.0.0.0/8"}, Brokers: f.st.Brokers, Names: f.st.Names}, store.New(f.st.DB),
		f.api.sync, f.st.DatabaseURL, f.st.Brokers)
	for i, want := range []int{202, 202, 429} {
		if code, _, b := postFrom(t, srv.URL, next(), fmt.Sprintf("203.0.113.%d", i+1)); code != want {
			t.Fatalf("untrusted request %d: %d, want %d: %s", i+1, code, want, b)
		}
	}
}

// docs/contract.md §8: REFRESH_GLOBAL_RATE bounds what all clients together queue:
// the burst is accepted, one more is 503 with Retry-After; a repeat that
// collapses into a queued request needs no budget.
func TestRefreshGlobalRate(t *testing.T) {
	f := newFixture(t, Config{RefreshRate: 100, RefreshBurst: 100, RefreshGlobalRate: 0.001, RefreshGlobalBurst: 3,
		TrustedProxies: []string{"127.0.0.1"}})
	for i := range 3 {
		if code, _, b := postFrom(t, f.url, fmt.Sprintf("tt%07d", 2000001+i), fmt.Sprintf("198.51.100.%d", i+1)); code != 202 {
			t.Fatalf("request %d of the burst: %d %s", i+1, code, b)
		}
	}
	code, h, b := postFrom(t, f.url, "tt2000009", "198.51.100.9")
	if code != http.StatusServiceUnavailable || decode[map[string]string](t, b)["error"] == "" {
		t.Fatalf("past the global rate: %d %s, want 503", code, b)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", h.Get("Retry-After"))
	}
	code, _, b = postFrom(t, f.url, "tt2000001", "198.51.100.9")
	if code != 202 || !decode[RefreshAccepted](t, b).Collapsed {
		t.Fatalf("a repeat within the window: %d %s, want 202 collapsed", code, b)
	}
	if n := testutil.ToFloat64(f.api.m.refreshes.WithLabelValues("global_limited")); n != 1 {
		t.Fatalf("global_limited %v, want 1", n)
	}
}

// docs/contract.md §8: a slow or absent Kafka never delays reads. Refreshes wait on
// a Kafka that hangs (or refuses connections) while the pool has two
// connections; reads answer promptly all the while, and the refreshes end
// in 503 within REFRESH_TIMEOUT.
func TestReadsAnswerWhileRefreshKafkaIsSlow(t *testing.T) {
	st := testenv.New(t)
	for _, tc := range []struct {
		name, broker string
		hangs        bool // else kafka-go fails at once (connection refused)
	}{
		{"hung", testenv.Blackhole(t), true},
		{"down", testenv.FreeAddr(t), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := pgstore.Open(context.Background(), st.DatabaseURL, 2)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: []string{tc.broker}, Topic: st.Topic(kafkax.TopicSyncRequests)})
			t.Cleanup(func() { w.Close() })
			const timeout = 3 * time.Second
			api, srv := serve(t, Config{RefreshRate: 100, RefreshBurst: 100, RefreshTimeout: timeout, TrustedProxies: []string{"127.0.0.1"},
				Brokers: st.Brokers, Names: st.Names}, store.New(pool), w, st.DatabaseURL, st.Brokers)
			const n = 8
			codes := make(chan int, n)
			start := time.Now()
			for i := range n {
				go func() {
					code, _, b := postFrom(t, srv.URL, fmt.Sprintf("tt%07d", 3000001+i), fmt.Sprintf("198.51.100.%d", i+1))
					if code != http.StatusServiceUnavailable {
						t.Errorf("refresh %d: %d %s", i, code, b)
					}
					codes <- code
				}()
			}
			if tc.hangs {
				testenv.Eventually(t, timeout, func() error {
					if v := testutil.ToFloat64(api.m.refreshWrites); v != n {
						return fmt.Errorf("%v refreshes waiting on Kafka, want %d", v, n)
					}
					return nil
				})
			}
			// Four times the pool, while every refresh waits on Kafka.
			readsAnswer(t, srv.URL, 500*time.Millisecond)
			readsAnswer(t, srv.URL, 500*time.Millisecond)
			if code, _, b := get(t, "GET", srv.URL+"/v1/movies", nil); code != http.StatusOK {
				t.Fatalf("movies: %d %s", code, b)
			}
			if v := testutil.ToFloat64(api.m.refreshWrites); tc.hangs && v != n {
				t.Fatalf("only %v refreshes still waiting: the reads did not run alongside them", v)
			}
			for range n {
				<-codes
			}
			if took := time.Since(start); took > timeout+2*time.Second {
				t.Fatalf("refreshes answered after %s, want within REFRESH_TIMEOUT %s", took, timeout)
			}
			// Nothing was recorded: a refresh that was not queued does not
			// collapse the next one.
			var rows int
			if err := st.DB.QueryRow(context.Background(), `SELECT count(*) FROM refresh_requests WHERE movie_id LIKE 'tt3%'`).Scan(&rows); err != nil || rows != 0 {
				t.Fatalf("%d refresh requests recorded (%v), want none", rows, err)
			}
		})
	}
}

// docs/contract.md §8: with OPS_TOKEN set, /v1/ops/* and /metrics answer 401
// without the bearer token or with a wrong one, 200 with it; /healthz,
// /readyz, reads, streams, refresh and the page stay public. Error text
// shows only behind the token.
func TestOpsToken(t *testing.T) {
	const token = "ops-7c0ffee-token"
	f := newFixture(t, Config{OpsToken: token})
	r := mkReview("generic", "tok1", "tt0111161", 1)
	f.insert(t, r)
	leak := "GET http://poller:pa55word@10.20.30.40/reviews: connection refused"
	if _, err := f.st.DB.Exec(context.Background(), `INSERT INTO provider_health (provider, status, last_attempt_at, last_error)
		VALUES ('generic', 'down', now(), $1)`, leak); err != nil {
		t.Fatal(err)
	}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	for _, path := range []string{"/v1/ops/providers", "/metrics", "/v1/ops/anything"} {
		for _, h := range []map[string]string{nil, bearer("wrong"), bearer(token + "x"), {"Authorization": token}} {
			code, hdr, b := get(t, "GET", f.url+path, h)
			if code != http.StatusUnauthorized || hdr.Get("Content-Type") != "application/json" || decode[map[string]string](t, b)["error"] == "" {
				t.Fatalf("%s with %v: %d %s, want 401 JSON", path, h, code, b)
			}
		}
	}
	code, hdr, b := get(t, "GET", f.url+"/v1/ops/providers", bearer(token))
	if code != http.StatusOK || !strings.Contains(string(b), leak) || hdr.Get("Cache-Control") != "private, no-cache" {
		t.Fatalf("ops with the token: %d %q %s, want 200 with the error's text", code, hdr.Get("Cache-Control"), b)
	}
	if code, _, b := get(t, "GET", f.url+"/metrics", bearer(token)); code != http.StatusOK || !strings.Contains(string(b), "reviewpipe_api_sse_subscribers") {
		t.Fatalf("metrics with the token: %d %.200s", code, b)
	}
	for _, p := range []string{"/healthz", "/readyz", "/", "/v1/movies", "/v1/movies/tt0111161/reviews", "/v1/reviews/" + r.ID} {
		if code, _, b := get(t, "GET", f.url+p, nil); code != http.StatusOK {
			t.Fatalf("%s without a token: %d %s", p, code, b)
		}
	}
	if code, _, b := get(t, "POST", f.url+"/v1/movies/tt0111161/refresh", nil); code != http.StatusAccepted {
		t.Fatalf("refresh without a token: %d %s", code, b)
	}
	if s := openStream(t, f.url+"/v1/movies/tt0111161/events"); s.res.StatusCode != http.StatusOK {
		t.Fatalf("events without a token: %d", s.res.StatusCode)
	}

	// The same view without OPS_TOKEN is public and leaves the text out;
	// so does /readyz with a dependency down.
	deadKafka := testenv.FreeAddr(t)
	_, open := serve(t, Config{Brokers: []string{deadKafka}, Names: f.st.Names}, store.New(f.st.DB), nil, f.st.DatabaseURL, []string{deadKafka})
	code, _, b = get(t, "GET", open.URL+"/v1/ops/providers", nil)
	if code != http.StatusOK || strings.Contains(string(b), "pa55word") || strings.Contains(string(b), "10.20.30.40") ||
		strings.Contains(string(b), deadKafka) || !strings.Contains(string(b), hiddenDetail) {
		t.Fatalf("public ops view: %d %s, want the errors' text hidden", code, b)
	}
	code, _, b = get(t, "GET", open.URL+"/readyz", nil)
	_, port, _ := net.SplitHostPort(deadKafka)
	if code != http.StatusServiceUnavailable || strings.Contains(string(b), port) || !strings.Contains(string(b), `"kafka":"down"`) {
		t.Fatalf("readyz with Kafka down: %d %s, want 503 with \"down\" and no address", code, b)
	}
}
