package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/reviewpipe/reviewpipe/services/poller/internal/budget"
)

// ClientConfig configures a provider API client.
type ClientConfig struct {
	// BaseURL is the provider's API root (PROVIDER_URL_<PROVIDER>); paths of
	// docs/providers.md are appended to it.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <key>" and nowhere else.
	APIKey string
	// Timeout bounds one request from dial to the last byte of the body.
	Timeout time.Duration
	// MaxBytes caps a response body; a longer one is an error.
	MaxBytes int64
	// UserAgent names this poller replica to the provider.
	UserAgent string
	// Transport, when set, replaces the default transport (tests).
	Transport http.RoundTripper
}

// Client sends authenticated GET requests to one provider. It follows
// redirects only within the provider's own scheme and host (so the API key
// never travels elsewhere), times out, and caps what it reads. Safe for
// concurrent use.
type Client struct {
	base     *url.URL
	key      string
	maxBytes int64
	ua       string
	http     *http.Client
	now      func() time.Time
}

// maxRedirects bounds redirects within the provider's host.
const maxRedirects = 3

// NewClient checks cfg and returns a client.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("provider URL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 16 << 20
	}
	tr := cfg.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: cfg.Timeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
		}
	}
	base := *u
	base.Path = strings.TrimSuffix(base.Path, "/")
	c := &Client{base: &base, key: cfg.APIKey, maxBytes: cfg.MaxBytes, ua: cfg.UserAgent, now: time.Now}
	c.http = &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Scheme != base.Scheme || req.URL.Host != base.Host {
				return fmt.Errorf("%w: to %s://%s", ErrRedirect, req.URL.Scheme, req.URL.Host)
			}
			if len(via) >= maxRedirects {
				return fmt.Errorf("%w: more than %d redirects", ErrRedirect, maxRedirects)
			}
			return nil
		},
	}
	return c, nil
}

// ErrRedirect is a redirect the client refused: to another host, or too many.
var ErrRedirect = errors.New("redirect refused")

// ErrTooLarge is an answer body over ClientConfig.MaxBytes.
var ErrTooLarge = errors.New("answer body over the size limit")

// StatusError is an answer other than 200. Its message is the provider's
// {"error": ...} text, never a request header.
type StatusError struct {
	Status int
	Msg    string
	// RetryAfter is the answer's Retry-After, if any.
	RetryAfter *time.Duration
}

func (e *StatusError) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("provider answered %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("provider answered %d: %s", e.Status, e.Msg)
}

// Answer is a 200 answer with its budget headers.
type Answer struct {
	Body    []byte
	Budget  budget.Headers
	Elapsed time.Duration
}

// Get sends GET base+path?query and returns the 200 answer's body. Every
// answer's budget headers come back with it, errors included, so the caller
// can keep its bucket in step; a non-200 answer is a *StatusError.
func (c *Client) Get(ctx context.Context, path string, query url.Values) (Answer, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	if c.ua != "" {
		req.Header.Set("User-Agent", c.ua)
	}
	start := c.now()
	res, err := c.http.Do(req)
	if err != nil {
		return Answer{Elapsed: c.now().Sub(start)}, err
	}
	defer res.Body.Close()
	a := Answer{Budget: budget.ParseHeaders(res.Header, c.now())}
	body, err := io.ReadAll(io.LimitReader(res.Body, c.maxBytes+1))
	a.Elapsed = c.now().Sub(start)
	if err != nil {
		return a, fmt.Errorf("read answer of %s: %w", path, err)
	}
	if res.StatusCode != http.StatusOK {
		se := &StatusError{Status: res.StatusCode, RetryAfter: a.Budget.RetryAfter}
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil {
			se.Msg = truncate(e.Error, 300)
		}
		return a, se
	}
	if int64(len(body)) > c.maxBytes {
		return a, fmt.Errorf("%w: %s answered more than %d bytes", ErrTooLarge, path, c.maxBytes)
	}
	a.Body = body
	return a, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Outcome classifies the result of a request for metrics and health, one of
// a small fixed set: ok, rate_limited, unavailable (503), server_error
// (other 5xx), gone (410), client_error (other 4xx), redirect, too_large,
// bad_answer (not the documented JSON), timeout, network_error, canceled.
func Outcome(err error) string {
	var se *StatusError
	var ne net.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &se):
		switch {
		case se.Status == http.StatusTooManyRequests:
			return "rate_limited"
		case se.Status == http.StatusServiceUnavailable:
			return "unavailable"
		case se.Status >= 500:
			return "server_error"
		case se.Status == http.StatusGone:
			return "gone"
		default:
			return "client_error"
		}
	case errors.Is(err, ErrRedirect):
		return "redirect"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrBadAnswer):
		return "bad_answer"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "network_error"
	}
}

// ProviderFault reports whether err says the provider is failing (5xx,
// timeouts, network errors, broken answers): what the circuit breaker
// counts. Rate limiting, refused requests, oversized pages (the poller asks
// for smaller ones) and cancellations are not.
func ProviderFault(err error) bool {
	switch Outcome(err) {
	case "unavailable", "server_error", "timeout", "network_error", "bad_answer":
		return true
	}
	return false
}

// Retryable reports whether the same request may succeed later: 429, 5xx,
// timeouts and network errors. 4xx answers other than 429 are not retried.
func Retryable(err error) bool {
	switch Outcome(err) {
	case "rate_limited", "unavailable", "server_error", "timeout", "network_error", "bad_answer":
		return true
	}
	return false
}

// ErrBadAnswer is a 200 answer that is not the documented JSON.
var ErrBadAnswer = errors.New("answer is not the documented JSON")
