package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type compose struct {
	Services map[string]struct {
		Environment map[string]any `yaml:"environment"`
		Build       any            `yaml:"build"`
	} `yaml:"services"`
}

// readCompose parses docker-compose.yml.
func readCompose(t *testing.T) compose {
	t.Helper()
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml is not valid YAML: %v", err)
	}
	return c
}

// docker-compose.yml cannot run here; this keeps it consistent with the
// services and the README: every long-running service has an entry, and
// every variable it sets is documented.
func TestComposeMatchesServicesAndReadme(t *testing.T) {
	c := readCompose(t)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := filepath.Glob("../services/*")
	for _, d := range dirs {
		name := filepath.Base(d)
		if name == "reviewctl" {
			continue // a CLI, run by the setup container
		}
		if _, err := os.Stat(filepath.Join(d, "main.go")); err != nil {
			continue
		}
		if _, ok := c.Services[name]; !ok {
			t.Errorf("services/%s has no service in docker-compose.yml", name)
		}
	}
	for _, infra := range []string{"kafka", "postgres", "prometheus", "grafana", "setup"} {
		if _, ok := c.Services[infra]; !ok {
			t.Errorf("docker-compose.yml lacks %s", infra)
		}
	}
	documented := func(v string) bool {
		if strings.Contains(string(readme), "`"+v+"`") {
			return true
		}
		// Families documented by pattern: WEBHOOK_SECRET_<PROVIDER>, *_ADDR.
		for _, fam := range []string{"WEBHOOK_SECRET_", "_ADDR"} {
			if strings.Contains(v, fam) && strings.Contains(string(readme), fam) {
				return true
			}
		}
		return false
	}
	ours := regexp.MustCompile(`^[A-Z][A-Z0-9_]+$`)
	for name, s := range c.Services {
		if name == "kafka" || name == "postgres" || name == "grafana" {
			continue // images' own variables
		}
		for v := range s.Environment {
			if v == "<<" || !ours.MatchString(v) {
				continue
			}
			if !documented(v) {
				t.Errorf("docker-compose.yml sets %s for %s, but README.md does not document it", v, name)
			}
		}
	}
}

// docs/TEAM.md says every service has a README on its role, settings,
// metrics and guarantees: each services/<name> with a main.go has a
// README.md titled with its name.
func TestEveryServiceHasAReadme(t *testing.T) {
	dirs, _ := filepath.Glob("../services/*")
	if len(dirs) == 0 {
		t.Fatal("no services found under ../services")
	}
	for _, d := range dirs {
		name := filepath.Base(d)
		if _, err := os.Stat(filepath.Join(d, "main.go")); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "README.md"))
		if err != nil {
			t.Errorf("services/%s has no README.md: %v", name, err)
			continue
		}
		if first, _, _ := strings.Cut(string(b), "\n"); !strings.HasPrefix(first, "# "+name) {
			t.Errorf("services/%s/README.md starts %q, want a title naming %s", name, first, name)
		}
	}
}
