package tests

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// The provider registry (pkg/provider) is the one list of providers; code
// derives from it. These are the places that cannot derive, held to it
// (docs/providers.md, "Adding a provider").

// envKeys are the variables of a compose environment, merges (<<) followed.
func envKeys(env map[string]any) []string {
	var out []string
	for k, v := range env {
		if k == "<<" {
			if m, ok := v.(map[string]any); ok {
				out = append(out, envKeys(m)...)
			}
			continue
		}
		out = append(out, k)
	}
	return out
}

// TestComposeHasASecretPerProvider fails when docker-compose.yml gives the
// receiver and the simulator a webhook secret of a provider that is not
// registered, or lacks one of a registered provider.
func TestComposeHasASecretPerProvider(t *testing.T) {
	c := readCompose(t)
	want := slices.Sorted(slices.Values(provider.SecretVars()))
	for _, svc := range []string{"receiver", "simulator"} {
		s, ok := c.Services[svc]
		if !ok {
			t.Fatalf("docker-compose.yml has no %s", svc)
		}
		var got []string
		for _, k := range envKeys(s.Environment) {
			if strings.HasPrefix(k, "WEBHOOK_SECRET_") {
				got = append(got, k)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("docker-compose.yml gives %s the secrets %v; the registered providers' are %v", svc, got, want)
		}
	}
}

// TestProvidersDocHasASectionPerProvider fails when docs/providers.md lacks
// the section of a registered provider, documents one nobody registered, or
// lost its walk-through of adding one.
func TestProvidersDocHasASectionPerProvider(t *testing.T) {
	b, err := os.ReadFile("../docs/providers.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## ([a-z][a-z0-9-]*)$`).FindAllStringSubmatch(doc, -1) {
		documented[m[1]] = true
	}
	registered := provider.Default().Names()
	if got := slices.Sorted(maps.Keys(documented)); !slices.Equal(got, registered) {
		t.Errorf("docs/providers.md has provider sections %v; the registered providers are %v", got, registered)
	}
	if !strings.Contains(doc, "## Adding a provider") {
		t.Error(`docs/providers.md lacks "## Adding a provider"`)
	}
}

// TestScriptsAndDeployNameNoProvider fails when a script or a deployment
// file lists providers by name instead of asking the registry
// (bin/reviewctl providers). Alert-rule tests (*_test.yml) are sample data.
func TestScriptsAndDeployNameNoProvider(t *testing.T) {
	var files []string
	for _, g := range []string{"../scripts/*.sh", "../deploy/*/*.yml", "../deploy/*/*/*.yml", "../deploy/*/*/*.json", "../Dockerfile", "../Makefile"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	if len(files) < 5 {
		t.Fatalf("found only %v: run from tests/", files)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.yml") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range provider.Registered() {
			word := regexp.MustCompile(`(?i)\b` + regexp.QuoteMeta(r.Name()) + `\b`)
			if loc := word.FindIndex(b); loc != nil {
				line := strings.Count(string(b[:loc[0]]), "\n") + 1
				t.Errorf("%s:%d names provider %q: derive the list from `bin/reviewctl providers` instead", f, line, r.Name())
			}
		}
	}
}
