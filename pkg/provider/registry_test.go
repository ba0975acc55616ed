package provider

import (
	"slices"
	"strings"
	"testing"
)

func TestRegisteredTableIsWellFormed(t *testing.T) {
	if err := checkRegistered(registered); err != nil {
		t.Fatal(err)
	}
	if len(registered) < 3 {
		t.Fatalf("%d providers registered; docs/contract.md §2 and §6 need generic and at least two more", len(registered))
	}
	if registered[0].Name() != "generic" {
		t.Errorf("first registration is %q; generic stays first so the simulator's seeded sequences replay", registered[0].Name())
	}
}

func TestCheckRegisteredRefusesBadLines(t *testing.T) {
	for _, tc := range []struct {
		name string
		rs   []Registration
		want string
	}{
		{"twice", []Registration{{Generic{}, 1}, {Generic{}, 2}}, "registered twice"},
		{"no rate", []Registration{{Generic{}, 0}}, "rate limit"},
		{"bad name", []Registration{{named{n: "Bad_Name"}, 1}}, "must be 1 to 32"},
		{"empty name", []Registration{{named{}, 1}}, "must be 1 to 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkRegistered(tc.rs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("checkRegistered = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// named is an adapter that only has a name.
type named struct {
	Generic
	n string
}

func (a named) Name() string { return a.n }

func TestDerivedListsFollowTheTable(t *testing.T) {
	var names, vars []string
	for _, r := range Registered() {
		names = append(names, r.Name())
		vars = append(vars, r.SecretVar())
	}
	if got := Default().Names(); !slices.Equal(got, slices.Sorted(slices.Values(names))) {
		t.Errorf("Default().Names() = %v, want the registered %v sorted", got, names)
	}
	if got := SecretVars(); !slices.Equal(got, vars) {
		t.Errorf("SecretVars() = %v, want %v", got, vars)
	}
	if !slices.Contains(SecretVars(), "WEBHOOK_SECRET_CINESCORE") {
		t.Errorf("SecretVars() = %v lacks WEBHOOK_SECRET_CINESCORE (docs/contract.md §2 spelling)", SecretVars())
	}
	for _, r := range Registered() {
		got, ok := Lookup(r.Name())
		if !ok || got.RateLimit != r.RateLimit {
			t.Errorf("Lookup(%q) = %+v, %v", r.Name(), got, ok)
		}
	}
	if _, ok := Lookup("nope"); ok {
		t.Error("Lookup(nope) found a provider")
	}
}
