package feed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
)

// The labels are metric label values dashboards and alerts select on: they
// must not change.
func TestOutcomeLabelsAndClasses(t *testing.T) {
	for _, tc := range []struct {
		o         Outcome
		label     string
		fault     bool
		retryable bool
	}{
		{OK, "ok", false, false},
		{RateLimited, "rate_limited", false, true},
		{Unavailable, "unavailable", true, true},
		{ServerError, "server_error", true, true},
		{Gone, "gone", false, false},
		{ClientError, "client_error", false, false},
		{Redirect, "redirect", false, false},
		{TooLarge, "too_large", false, false},
		{BadAnswer, "bad_answer", true, true},
		{Timeout, "timeout", true, true},
		{NetworkError, "network_error", true, true},
		{Canceled, "canceled", false, false},
		{BreakerOpen, "breaker_open", false, true},
	} {
		if got := tc.o.String(); got != tc.label {
			t.Errorf("Outcome(%d).String() = %q, want %q", tc.o, got, tc.label)
		}
		if tc.o.ProviderFault() != tc.fault || tc.o.Retryable() != tc.retryable {
			t.Errorf("%s: fault %v retryable %v, want %v %v", tc.label, tc.o.ProviderFault(), tc.o.Retryable(), tc.fault, tc.retryable)
		}
	}
	if got := Outcome(200).String(); got != "unknown" {
		t.Errorf("an outcome out of range is %q", got)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Outcome
	}{
		{nil, OK},
		{&StatusError{Status: 429}, RateLimited},
		{fmt.Errorf("changes: %w", &StatusError{Status: 503}), Unavailable},
		{&StatusError{Status: 500}, ServerError},
		{&StatusError{Status: 502}, ServerError},
		{&StatusError{Status: 410}, Gone},
		{&StatusError{Status: 400}, ClientError},
		{&StatusError{Status: 401}, ClientError},
		{fmt.Errorf("%w: to https://elsewhere", ErrRedirect), Redirect},
		{fmt.Errorf("%w: /x", ErrTooLarge), TooLarge},
		{fmt.Errorf("%w: changes: eof", ErrBadAnswer), BadAnswer},
		{context.Canceled, Canceled},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), Timeout},
		{&net.OpError{Op: "read", Err: timeoutErr{}}, Timeout},
		{errors.New("connection refused"), NetworkError},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}
