// Package ops checks the operations files that ship with reviewpipe and that
// nothing else runs here: the Prometheus alert rules and the Grafana
// dashboard name only metrics the services register, every rule is complete,
// and every alert has a runbook section.
package ops

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const root = "../.."

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// metricRef matches the reviewpipe metric names in a PromQL expression.
var metricRef = regexp.MustCompile(`\b(reviewpipe_[a-z0-9_]+)`)

// registered returns every metric name a non-test Go file under pkg/ or
// services/ declares as a string literal ("reviewpipe_...").
func registered(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	lit := regexp.MustCompile(`"(reviewpipe_[a-z0-9_]+)"`)
	for _, dir := range []string{"pkg", "services"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
				names[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(names) < 20 {
		t.Fatalf("found only %d metric names in the source; the scan is broken", len(names))
	}
	return names
}

// known reports whether name, or the histogram series it is part of, is
// registered.
func known(reg map[string]bool, name string) bool {
	if reg[name] {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if strings.HasSuffix(name, suf) && reg[strings.TrimSuffix(name, suf)] {
			return true
		}
	}
	return false
}

// balanced catches the commonest PromQL typos without a PromQL parser.
func balanced(expr string) bool {
	var stack []rune
	pair := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inStr := false
	for _, c := range expr {
		switch {
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, c)
		case c == ')' || c == ']' || c == '}':
			if len(stack) == 0 || stack[len(stack)-1] != pair[c] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !inStr
}

// anchor is the GitHub-style anchor of a markdown heading.
func anchor(heading string) string {
	h := strings.ToLower(strings.TrimSpace(heading))
	var b strings.Builder
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteRune(c)
		case c == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "deploy/prometheus/alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("alerts.yml is not a Prometheus rule file: %v", err)
	}
	runbook, err := os.ReadFile(filepath.Join(root, "docs/runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, line := range strings.Split(string(runbook), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			sections[anchor(h)] = true
		}
	}
	reg := registered(t)
	forRe := regexp.MustCompile(`^[0-9]+(ms|s|m|h|d)$`)
	alerts := map[string]bool{}
	groups := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group name %q empty or repeated", g.Name)
		}
		groups[g.Name] = true
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				t.Errorf("group %s: a rule without alert (recording rules are not expected here)", g.Name)
				continue
			}
			alerts[name] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: no expr", name)
			}
			if !balanced(r.Expr) {
				t.Errorf("%s: unbalanced brackets or quotes in expr %q", name, r.Expr)
			}
			if !forRe.MatchString(r.For) {
				t.Errorf("%s: for is %q, want a duration like 5m", name, r.For)
			}
			switch r.Labels["severity"] {
			case "critical", "warning":
			default:
				t.Errorf("%s: labels.severity is %q, want critical or warning", name, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no annotations.summary", name)
			}
			rb := r.Annotations["runbook_url"]
			frag, ok := strings.CutPrefix(rb, "docs/runbook.md#")
			if !ok {
				t.Errorf("%s: annotations.runbook_url is %q, want docs/runbook.md#<section>", name, rb)
			} else if frag != strings.ToLower(name) || !sections[frag] {
				t.Errorf("%s: runbook_url %q: docs/runbook.md needs a section \"## %s\"", name, rb, name)
			}
			refs := metricRef.FindAllString(r.Expr, -1)
			if len(refs) == 0 && !strings.HasPrefix(strings.TrimSpace(r.Expr), "up{") {
				t.Errorf("%s: expr names no reviewpipe metric (nor Prometheus' up): %q", name, r.Expr)
			}
			for _, m := range refs {
				if !known(reg, m) {
					t.Errorf("%s: metric %s is not registered by any service (grep services/ pkg/)", name, m)
				}
			}
		}
	}
	// The five kinds of alert, by name.
	for _, want := range []string{"ReviewpipeFreshnessBreach", "ReviewpipeSyncFailing", "ReviewpipeConsumerLagGrowing",
		"ReviewpipeDeadLettersGrowing", "ReviewpipePollerBreakerOpen", "ReviewpipeSinkBreakerOpen"} {
		if !alerts[want] {
			t.Errorf("alerts.yml lacks %s", want)
		}
	}
	// Every runbook section belongs to an alert (no stale sections).
	var stale []string
	for s := range sections {
		found := false
		for a := range alerts {
			if strings.ToLower(a) == s {
				found = true
			}
		}
		if !found {
			stale = append(stale, s)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Errorf("docs/runbook.md has sections for no alert: %v", stale)
	}
}

type dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // inside collapsed rows
}

func TestDashboards(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(root, "deploy/grafana/dashboards/*.json"))
	if len(files) == 0 {
		t.Fatal("no dashboard in deploy/grafana/dashboards (docker-compose provisions that folder)")
	}
	reg := registered(t)
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: not JSON: %v", file, err)
		}
		if d.Title == "" || d.UID == "" {
			t.Errorf("%s: title and uid are required", file)
		}
		var walk func(ps []panel)
		exprs := 0
		walk = func(ps []panel) {
			for _, p := range ps {
				walk(p.Panels)
				if p.Type == "row" {
					continue
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no query", file, p.Title)
				}
				for _, tg := range p.Targets {
					exprs++
					if !balanced(tg.Expr) {
						t.Errorf("%s: panel %q: unbalanced expr %q", file, p.Title, tg.Expr)
					}
					refs := metricRef.FindAllString(tg.Expr, -1)
					if len(refs) == 0 {
						t.Errorf("%s: panel %q: expr names no reviewpipe metric: %q", file, p.Title, tg.Expr)
					}
					for _, m := range refs {
						if !known(reg, m) {
							t.Errorf("%s: panel %q: metric %s is not registered by any service", file, p.Title, m)
						}
					}
				}
			}
		}
		walk(d.Panels)
		if exprs == 0 {
			t.Errorf("%s: no queries", file)
		}
	}
}

// TestRunbookCommands keeps the runbook's reviewctl commands real: each
// subcommand it names is one the README documents.
func TestRunbookCommands(t *testing.T) {
	runbook, err := os.ReadFile(filepath.Join(root, "docs/runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := regexp.MustCompile(`bin/reviewctl ([a-z]+)`)
	found := 0
	for _, m := range cmd.FindAllStringSubmatch(string(runbook), -1) {
		found++
		if !strings.Contains(string(readme), "bin/reviewctl "+m[1]) {
			t.Errorf("docs/runbook.md uses `bin/reviewctl %s`, which README.md does not document", m[1])
		}
	}
	if found == 0 {
		t.Error("docs/runbook.md names no reviewctl command")
	}
}
