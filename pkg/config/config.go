// Package config reads typed settings from the environment with defaults and
// errors that name the variable. Only a service's main calls it; everything
// below main takes config structs.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env reads variables and collects every error, so one run reports all the
// bad settings at once. The zero value reads the process environment.
type Env struct {
	Lookup func(string) (string, bool)
	errs   []error
}

func (e *Env) get(name string) (string, bool) {
	if e.Lookup != nil {
		return e.Lookup(name)
	}
	v, ok := os.LookupEnv(name)
	return v, ok && v != ""
}

// String returns the variable, or def when unset or empty.
func (e *Env) String(name, def string) string {
	if v, ok := e.get(name); ok && v != "" {
		return v
	}
	return def
}

// Required returns the variable, recording an error when it is unset.
func (e *Env) Required(name, what string) string {
	v, ok := e.get(name)
	if !ok || v == "" {
		e.errs = append(e.errs, fmt.Errorf("%s is not set: it must name %s", name, what))
	}
	return v
}

// List splits a comma-separated variable, dropping empty items.
func (e *Env) List(name, def string) []string {
	var out []string
	for _, s := range strings.Split(e.String(name, def), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Int parses an integer variable.
func (e *Env) Int(name string, def int) int {
	v, ok := e.get(name)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q is not an integer", name, v))
		return def
	}
	return n
}

// Float parses a number variable.
func (e *Env) Float(name string, def float64) float64 {
	v, ok := e.get(name)
	if !ok || v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q is not a number", name, v))
		return def
	}
	return f
}

// Duration parses a Go duration ("250ms", "10s").
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v, ok := e.get(name)
	if !ok || v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q is not a duration (examples: 500ms, 10s, 2m)", name, v))
		return def
	}
	return d
}

// Bool parses true/false/1/0.
func (e *Env) Bool(name string, def bool) bool {
	v, ok := e.get(name)
	if !ok || v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q is not a boolean (true or false)", name, v))
		return def
	}
	return b
}

// Err returns every error recorded so far, joined, or nil.
func (e *Env) Err() error { return errors.Join(e.errs...) }

// EnvSuffix is a provider's name as it ends a per-provider variable
// (WEBHOOK_SECRET_<PROVIDER>, POLL_RATE_<PROVIDER>, ...): upper-cased, '-'
// as '_'. Every per-provider variable is named through it, so a provider
// has one spelling in the environment.
func EnvSuffix(provider string) string {
	return strings.ToUpper(strings.ReplaceAll(provider, "-", "_"))
}

// SecretVar returns the variable holding a provider's webhook secrets:
// WEBHOOK_SECRET_<PROVIDER> (EnvSuffix).
func SecretVar(provider string) string { return "WEBHOOK_SECRET_" + EnvSuffix(provider) }

// Mask hides all but a secret's first 6 characters, for logging configs.
func Mask(s string) string {
	if s == "" {
		return ""
	}
	if len(s) <= 6 {
		return "***"
	}
	return s[:6] + "***"
}

// MaskURL hides the password of a URL such as DATABASE_URL.
func MaskURL(s string) string {
	at := strings.LastIndex(s, "@")
	scheme := strings.Index(s, "://")
	if at < 0 || scheme < 0 {
		return s
	}
	cred := s[scheme+3 : at]
	if user, _, ok := strings.Cut(cred, ":"); ok {
		return s[:scheme+3] + user + ":***" + s[at:]
	}
	return s
}

// Common holds the settings every service shares.
type Common struct {
	Brokers        []string
	DatabaseURL    string
	TopicNamespace string
	LogLevel       string
}

// ReadCommon reads KAFKA_BROKERS, DATABASE_URL, TOPIC_NAMESPACE and LOG_LEVEL.
func ReadCommon(e *Env) Common {
	return Common{
		Brokers:        e.List("KAFKA_BROKERS", "127.0.0.1:9092"),
		DatabaseURL:    e.String("DATABASE_URL", "postgres://reviewpipe:reviewpipe@127.0.0.1:25432/reviewpipe?sslmode=disable"),
		TopicNamespace: e.String("TOPIC_NAMESPACE", ""),
		LogLevel:       e.String("LOG_LEVEL", "info"),
	}
}
