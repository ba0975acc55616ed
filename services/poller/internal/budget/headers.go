package budget

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ParseHeaders reads the rate-limit headers of an answer (docs/providers.md)
// received at now. Values that are absent or malformed stay nil; Retry-After
// is read as seconds or as an HTTP date.
func ParseHeaders(h http.Header, now time.Time) Headers {
	var out Headers
	if v := strings.TrimSpace(h.Get("X-RateLimit-Limit")); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
			out.Limit = &f
		}
	}
	if v := strings.TrimSpace(h.Get("X-RateLimit-Remaining")); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			out.Remaining = &n
		}
	}
	if v := strings.TrimSpace(h.Get("X-RateLimit-Reset")); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			out.Reset = &n
		}
	}
	if d, ok := RetryAfter(h.Get("Retry-After"), now); ok {
		out.RetryAfter = &d
	}
	return out
}

// MaxRetryAfter bounds a Retry-After the poller obeys, so one odd header
// cannot stop a provider's sync for hours.
const MaxRetryAfter = 10 * time.Minute

// RetryAfter parses a Retry-After value: delay seconds or an HTTP date. It
// reports false when v is empty or malformed; the result is within
// [0, MaxRetryAfter].
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n < 0 || n != n {
			return 0, false
		}
		d = time.Duration(n * float64(time.Second))
		if n > MaxRetryAfter.Seconds() {
			d = MaxRetryAfter
		}
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, 0), MaxRetryAfter), true
}
