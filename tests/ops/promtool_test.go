package ops

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// promtool finds Prometheus's promtool: $PROMTOOL, what scripts/promtool.sh
// unpacked into .cache/prometheus, or one on PATH. make test fetches it, so
// under REVIEWPIPE_INTEGRATION=1 a missing promtool fails the test.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	if p, err := filepath.Abs(filepath.Join(root, ".cache/prometheus/usr/bin/promtool")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if os.Getenv("REVIEWPIPE_INTEGRATION") == "1" {
		t.Fatal("no promtool: run scripts/promtool.sh (make test does), or set PROMTOOL")
	}
	t.Skip("promtool checks: run scripts/promtool.sh first (make test does)")
	return ""
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

// Prometheus's own tooling accepts the rules and the scrape configuration,
// and its rule engine passes the unit tests of every alert
// (deploy/prometheus/alerts_test.yml): each fires on the series the
// services export, with the expected labels and annotations, and healthy
// look-alikes fire nothing.
func TestAlertRulesWithPromtool(t *testing.T) {
	pt := promtool(t)
	dir := filepath.Join(root, "deploy/prometheus")
	run(t, pt, "check", "rules", filepath.Join(dir, "alerts.yml"))
	run(t, pt, "test", "rules", filepath.Join(dir, "alerts_test.yml"))

	// prometheus.yml names the rules where docker-compose mounts them
	// (/etc/prometheus); point a copy at this tree's file to check it.
	cfg, err := os.ReadFile(filepath.Join(dir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs(filepath.Join(dir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "/etc/prometheus/alerts.yml") {
		t.Fatal("prometheus.yml no longer loads /etc/prometheus/alerts.yml: update this test with docker-compose.yml")
	}
	// It scrapes with the operator token from the file docker-compose.yml
	// writes (promtool checks that the file exists): a stand-in here.
	if !strings.Contains(string(cfg), "credentials_file: /prometheus/ops_token") {
		t.Fatal("prometheus.yml no longer scrapes with /prometheus/ops_token: update this test with docker-compose.yml")
	}
	tmp := t.TempDir()
	token := filepath.Join(tmp, "ops_token")
	if err := os.WriteFile(token, []byte("test-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(tmp, "prometheus.yml")
	text := strings.ReplaceAll(string(cfg), "/etc/prometheus/alerts.yml", rules)
	text = strings.ReplaceAll(text, "/prometheus/ops_token", token)
	if err := os.WriteFile(local, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, pt, "check", "config", local)
}
