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

// Error is the status and the provider's message; it never holds the API key.
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

// ErrBadAnswer is a 200 answer that is not the documented JSON.
var ErrBadAnswer = errors.New("answer is not the documented JSON")
