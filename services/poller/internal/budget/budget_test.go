package budget

import (
	"net/http"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// sendAll simulates a client that sends whenever the bucket allows, for d,
// checking every ms, and returns the send times.
func sendAll(b *Bucket, start time.Time, d time.Duration) []time.Time {
	var sent []time.Time
	for now := start; now.Before(start.Add(d)); now = now.Add(time.Millisecond) {
		if b.Delay(now) == 0 && b.Take(now) {
			sent = append(sent, now)
		}
	}
	return sent
}

// maxPerWindow is the most sends in any half-open window of length w.
func maxPerWindow(sent []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range sent {
		for sent[i].Sub(sent[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

func TestBucketRate(t *testing.T) {
	for _, tc := range []struct {
		name        string
		rate, burst float64
		window      time.Duration
		wantMax     int // most sends in any 1s window
		wantTotal   int // over 10s
	}{
		{"burst 1 never exceeds the rate in any second", 20, 1, time.Second, 20, 200},
		{"slow provider", 5, 1, time.Second, 5, 50},
		{"fractional rate", 2.5, 1, 2 * time.Second, 5, 25},
		{"a burst adds at most burst-1 to one window", 10, 5, time.Second, 14, 104},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(tc.rate, tc.burst, t0)
			sent := sendAll(b, t0, 10*time.Second)
			if got := maxPerWindow(sent, tc.window); got != tc.wantMax {
				t.Errorf("max sends per %s window = %d, want %d", tc.window, got, tc.wantMax)
			}
			if abs(len(sent)-tc.wantTotal) > 1 {
				t.Errorf("%d sends in 10s, want about %d", len(sent), tc.wantTotal)
			}
		})
	}
}

func abs(n int) int { return max(n, -n) }

func TestBucketDelay(t *testing.T) {
	b := New(4, 1, t0)
	if d := b.Delay(t0); d != 0 {
		t.Fatalf("full bucket: delay %s, want 0", d)
	}
	if !b.Take(t0) {
		t.Fatal("full bucket refused a take")
	}
	if b.Take(t0) {
		t.Fatal("empty bucket granted a take")
	}
	if d := b.Delay(t0); d != 250*time.Millisecond {
		t.Fatalf("empty bucket at 4/s: delay %s, want 250ms", d)
	}
	if d := b.Delay(t0.Add(100 * time.Millisecond)); d != 150*time.Millisecond {
		t.Fatalf("after 100ms: delay %s, want 150ms", d)
	}
	if !b.Take(t0.Add(250 * time.Millisecond)) {
		t.Fatal("refill after 250ms refused")
	}
}

func TestObserveFollowsTheProvider(t *testing.T) {
	for _, tc := range []struct {
		name       string
		configured float64
		h          Headers
		wantRate   float64
		wantTokens float64
	}{
		{"no headers change nothing", 20, Headers{}, 20, 1},
		{"a lower published limit is followed", 20, Headers{Limit: ptr(2.0)}, 2, 1},
		{"a higher published limit is not", 5, Headers{Limit: ptr(50.0)}, 5, 1},
		{"remaining 0 empties the bucket", 20, Headers{Remaining: ptr(0)}, 20, 0},
		{"a higher remaining is not trusted", 20, Headers{Remaining: ptr(17)}, 20, 1},
		{"nonsense limit ignored", 20, Headers{Limit: ptr(-1.0)}, 20, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(tc.configured, 1, t0)
			b.Observe(t0, tc.h)
			s := b.Snapshot(t0)
			if s.Rate != tc.wantRate || s.Tokens != tc.wantTokens {
				t.Errorf("rate %v tokens %v, want rate %v tokens %v", s.Rate, s.Tokens, tc.wantRate, tc.wantTokens)
			}
		})
	}
}

func TestObserveThenRecover(t *testing.T) {
	b := New(20, 1, t0)
	b.Observe(t0, Headers{Limit: ptr(2.0), Remaining: ptr(0)})
	if d := b.Delay(t0); d != 500*time.Millisecond {
		t.Fatalf("after limit 2 and remaining 0: delay %s, want 500ms (one interval at 2/s)", d)
	}
	// The provider restores its published limit: back to the configured rate.
	b.Observe(t0.Add(time.Second), Headers{Limit: ptr(20.0), Remaining: ptr(19)})
	if s := b.Snapshot(t0.Add(time.Second)); s.Rate != 20 {
		t.Fatalf("rate %v after the limit came back, want 20", s.Rate)
	}
}

func TestPause(t *testing.T) {
	b := New(10, 3, t0)
	b.Pause(t0, 2*time.Second)
	if b.Take(t0.Add(1999 * time.Millisecond)) {
		t.Fatal("took a token during a Retry-After pause")
	}
	if d := b.Delay(t0.Add(time.Second)); d != time.Second+100*time.Millisecond {
		t.Fatalf("delay 1s into a 2s pause = %s, want 1.1s (pause, then one token at 10/s)", d)
	}
	// After the pause the bucket refills from empty: no burst of 3.
	sent := sendAll(b, t0.Add(2*time.Second), time.Second)
	if len(sent) > 10 || sent[0].Before(t0.Add(2100*time.Millisecond)) {
		t.Fatalf("after the pause: %d sends, first at %s; want at most 10, none before 2.1s", len(sent), sent[0].Sub(t0))
	}
	// A shorter pause does not cut a longer one short.
	b.Pause(t0.Add(3*time.Second), 5*time.Second)
	b.Pause(t0.Add(3*time.Second), time.Second)
	if b.Take(t0.Add(7 * time.Second)) {
		t.Fatal("a shorter Retry-After shortened the longer pause")
	}
}

// A 429 storm: the provider answers 429 with Retry-After 1 on every request.
// A client that obeys Pause sends at most one request per second.
func TestStormKeepsOneRequestPerRetryAfter(t *testing.T) {
	b := New(20, 1, t0)
	var sent []time.Time
	for now := t0; now.Before(t0.Add(10 * time.Second)); now = now.Add(time.Millisecond) {
		if b.Take(now) {
			sent = append(sent, now)
			h := http.Header{"Retry-After": {"1"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Limit": {"20"}}
			ph := ParseHeaders(h, now)
			b.Observe(now, ph)
			b.Pause(now, *ph.RetryAfter)
		}
	}
	if got := maxPerWindow(sent, time.Second); got != 1 {
		t.Fatalf("%d requests in one second during a 429 storm, want 1", got)
	}
	if len(sent) < 9 || len(sent) > 10 {
		t.Fatalf("%d requests in 10s of storm, want 9 or 10", len(sent))
	}
}

func TestParseHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "2.5")
	h.Set("X-RateLimit-Remaining", "3")
	h.Set("X-RateLimit-Reset", "1")
	h.Set("Retry-After", "4")
	got := ParseHeaders(h, t0)
	if *got.Limit != 2.5 || *got.Remaining != 3 || *got.Reset != 1 || *got.RetryAfter != 4*time.Second {
		t.Fatalf("parsed %+v", got)
	}
	if got := ParseHeaders(http.Header{"X-Ratelimit-Limit": {"lots"}, "X-Ratelimit-Remaining": {"-2"}}, t0); got.Limit != nil || got.Remaining != nil {
		t.Fatalf("malformed headers parsed as %+v", got)
	}
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"99999999", MaxRetryAfter, true},
		{t0.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second, true},
		{t0.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	} {
		d, ok := RetryAfter(tc.v, t0)
		if d != tc.want || ok != tc.ok {
			t.Errorf("RetryAfter(%q) = %s, %v; want %s, %v", tc.v, d, ok, tc.want, tc.ok)
		}
	}
}

// The first answer says the provider allows less than configured: the time
// the request took is refilled at the provider's rate, not the configured one.
func TestLowerLimitLearnedFromTheFirstAnswer(t *testing.T) {
	b := New(50, 1, t0)
	if !b.Take(t0) {
		t.Fatal("first take refused")
	}
	at := t0.Add(20 * time.Millisecond)
	b.Observe(at, Headers{Limit: ptr(5.0)})
	if d := b.Delay(at); d != 180*time.Millisecond {
		t.Fatalf("delay %s after learning a limit of 5/s, want 180ms (0.1 token refilled at 5/s)", d)
	}
}

// With headroom the bucket follows a fraction below the published limit,
// never above the configured rate.
func TestHeadroom(t *testing.T) {
	b := New(50, 1, t0)
	b.SetHeadroom(0.05)
	b.Observe(t0, Headers{Limit: ptr(5.0)})
	if s := b.Snapshot(t0); s.Rate != 4.75 || s.Published != 5 {
		t.Fatalf("rate %v (published %v), want 4.75 below a published 5", s.Rate, s.Published)
	}
	b = New(2, 1, t0)
	b.SetHeadroom(0.05)
	b.Observe(t0, Headers{Limit: ptr(5.0)})
	if s := b.Snapshot(t0); s.Rate != 2 {
		t.Fatalf("rate %v, want the configured 2 below the published 5 less headroom", s.Rate)
	}
}
