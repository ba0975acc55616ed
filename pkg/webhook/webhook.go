// Package webhook signs and verifies Standard Webhooks deliveries
// (https://www.standardwebhooks.com): the webhook-id, webhook-timestamp and
// webhook-signature headers, and HMAC-SHA256 over "{id}.{timestamp}.{body}".
//
// Verifier and Signer are immutable after construction and safe for
// concurrent use. Neither ever puts a secret or a signature in an error.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the Standard Webhooks spec.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is how far a timestamp may be from now, either way.
const DefaultTolerance = 5 * time.Minute

const secretPrefix = "whsec_"

// Errors returned by Verify. Each is safe to show to the sender.
var (
	ErrMissingHeaders   = errors.New("missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrBadTimestamp     = errors.New("webhook-timestamp is not Unix seconds")
	ErrTimestampSkew    = errors.New("webhook-timestamp is more than 5 minutes away from now")
	ErrNoMatch          = errors.New("no signature matches")
	ErrNoSecretsDefined = errors.New("no webhook secret is configured for this provider")
)

// ParseSecrets parses a space-separated list of "whsec_<base64 key>" secrets,
// as WEBHOOK_SECRET_<PROVIDER> holds them, into raw keys. The error names the
// position of a bad secret, never its value.
func ParseSecrets(s string) ([][]byte, error) {
	var keys [][]byte
	for i, f := range strings.Fields(s) {
		if !strings.HasPrefix(f, secretPrefix) {
			return nil, fmt.Errorf("secret %d does not start with %q", i+1, secretPrefix)
		}
		k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(f, secretPrefix))
		if err != nil || len(k) == 0 {
			return nil, fmt.Errorf("secret %d: the part after %q is not base64", i+1, secretPrefix)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// FormatSecret returns key as a "whsec_" secret string.
func FormatSecret(key []byte) string {
	return secretPrefix + base64.StdEncoding.EncodeToString(key)
}

// Sign returns the "v1,<base64>" signature of a delivery under key.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, strconv.FormatInt(ts.Unix(), 10), body))
}

// SetHeaders signs body under key and sets the three webhook headers on h.
func SetHeaders(h http.Header, key []byte, id string, ts time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, Sign(key, id, ts, body))
}

func mac(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verifier checks deliveries against one provider's keys.
type Verifier struct {
	Keys      [][]byte
	Tolerance time.Duration // DefaultTolerance when zero
	Now       func() time.Time
}

// Verify checks the headers of a delivery against body. It returns the
// webhook-id on success. Every comparison of signatures is constant-time, and
// every key is tried (key rotation).
func (v Verifier) Verify(h http.Header, body []byte) (string, error) {
	id, tsRaw, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsRaw == "" || sigs == "" {
		return "", ErrMissingHeaders
	}
	if len(v.Keys) == 0 {
		return "", ErrNoSecretsDefined
	}
	sec, err := strconv.ParseInt(tsRaw, 10, 64)
	if err != nil {
		return "", ErrBadTimestamp
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tol := v.Tolerance
	if tol == 0 {
		tol = DefaultTolerance
	}
	skew := now().Sub(time.Unix(sec, 0))
	if skew > tol || skew < -tol {
		return "", ErrTimestampSkew
	}
	expected := make([][]byte, len(v.Keys))
	for i, k := range v.Keys {
		expected[i] = mac(k, id, tsRaw, body)
	}
	matched := false
	for _, s := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		for _, e := range expected {
			if hmac.Equal(got, e) {
				matched = true // keep looping: time does not depend on which matched
			}
		}
	}
	if !matched {
		return "", ErrNoMatch
	}
	return id, nil
}
