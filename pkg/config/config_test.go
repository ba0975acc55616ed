package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) *Env {
	return &Env{Lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

func TestEnvCollectsEveryError(t *testing.T) {
	e := env(map[string]string{"A": "x", "B": "1s", "C": "soon", "D": "2,, 3 "})
	if got := e.Int("A", 1); got != 1 {
		t.Errorf("Int on bad value = %d, want default 1", got)
	}
	if got := e.Duration("B", 0); got != time.Second {
		t.Errorf("Duration = %v", got)
	}
	e.Duration("C", 0)
	e.Required("MISSING", "the brokers")
	if got := e.List("D", ""); len(got) != 2 || got[1] != "3" {
		t.Errorf("List = %q", got)
	}
	err := e.Err()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"A=\"x\" is not an integer", "C=\"soon\" is not a duration", "MISSING is not set"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestSecretVarAndMask(t *testing.T) {
	if got := SecretVar("cine-score"); got != "WEBHOOK_SECRET_CINE_SCORE" {
		t.Errorf("SecretVar = %s", got)
	}
	if got := MaskURL("postgres://u:secret@h:5/db"); got != "postgres://u:***@h:5/db" {
		t.Errorf("MaskURL = %s", got)
	}
	if got := Mask("whsec_abcdef"); strings.Contains(got, "abcdef") {
		t.Errorf("Mask leaks: %s", got)
	}
}
