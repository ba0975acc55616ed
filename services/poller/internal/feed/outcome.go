package feed

import (
	"context"
	"errors"
	"net"
	"net/http"
)

// Outcome is what became of one request to a provider, one of a small fixed
// set. Its String is the outcome label of reviewpipe_poller_requests_total,
// so the set and its spellings are part of the poller's metrics.
type Outcome uint8

// The outcomes. Classify returns every one but BreakerOpen, which the
// poller's circuit breaker produces by refusing a request before it is sent.
const (
	OK           Outcome = iota // a 200 answer of the documented shape
	RateLimited                 // 429
	Unavailable                 // 503: the provider says it is down
	ServerError                 // any other 5xx
	Gone                        // 410: the provider no longer knows the cursor
	ClientError                 // any other 4xx
	Redirect                    // a redirect the client refused (another host, too many)
	TooLarge                    // a body over ClientConfig.MaxBytes
	BadAnswer                   // a 200 answer that is not the documented JSON
	Timeout                     // the request or its context ran out of time
	NetworkError                // anything else: refused connections, resets, DNS
	Canceled                    // the caller's context was canceled
	BreakerOpen                 // the circuit breaker refused to send the request
)

var outcomeNames = [...]string{
	OK:           "ok",
	RateLimited:  "rate_limited",
	Unavailable:  "unavailable",
	ServerError:  "server_error",
	Gone:         "gone",
	ClientError:  "client_error",
	Redirect:     "redirect",
	TooLarge:     "too_large",
	BadAnswer:    "bad_answer",
	Timeout:      "timeout",
	NetworkError: "network_error",
	Canceled:     "canceled",
	BreakerOpen:  "breaker_open",
}

// String is the outcome's metric label value, for example "rate_limited".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// ProviderFault reports whether the outcome says the provider is failing
// (5xx, timeouts, network errors, broken answers): what the circuit breaker
// counts. Rate limiting, refused requests, oversized pages (the poller asks
// for smaller ones), cancellations and the breaker's own refusals are not.
func (o Outcome) ProviderFault() bool {
	switch o {
	case Unavailable, ServerError, Timeout, NetworkError, BadAnswer:
		return true
	}
	return false
}

// Retryable reports whether the same request may succeed later: 429, 5xx,
// timeouts, network errors, broken answers, and a request the breaker held
// back. 4xx answers other than 429, refused redirects, oversized pages and
// cancellations are not retried as they are.
func (o Outcome) Retryable() bool {
	switch o {
	case RateLimited, Unavailable, ServerError, Timeout, NetworkError, BadAnswer, BreakerOpen:
		return true
	}
	return false
}

// Classify returns the outcome of a request that returned err (nil: OK).
// It never returns BreakerOpen: the breaker's errors are not this package's
// (the poller's fetcher classifies them first); an error it does not know
// is a NetworkError.
func Classify(err error) Outcome {
	var se *StatusError
	var ne net.Error
	switch {
	case err == nil:
		return OK
	case errors.As(err, &se):
		switch {
		case se.Status == http.StatusTooManyRequests:
			return RateLimited
		case se.Status == http.StatusServiceUnavailable:
			return Unavailable
		case se.Status >= 500:
			return ServerError
		case se.Status == http.StatusGone:
			return Gone
		default:
			return ClientError
		}
	case errors.Is(err, ErrRedirect):
		return Redirect
	case errors.Is(err, ErrTooLarge):
		return TooLarge
	case errors.Is(err, ErrBadAnswer):
		return BadAnswer
	case errors.Is(err, context.Canceled):
		return Canceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Timeout
	default:
		return NetworkError
	}
}
