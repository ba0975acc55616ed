package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

func TestProvidersListsTheRegistry(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		r := run(t, append([]string{"providers"}, args...)...)
		return r.code, r.stdout, r.stderr
	}
	var names, vars []string
	for _, r := range provider.Registered() {
		names = append(names, r.Name())
		vars = append(vars, r.SecretVar())
	}
	if code, out, _ := run(); code != ExitOK || out != strings.Join(names, "\n")+"\n" {
		t.Errorf("providers = %d %q, want %v one a line", code, out, names)
	}
	if code, out, _ := run("--secret-vars"); code != ExitOK || !strings.Contains(out, "WEBHOOK_SECRET_GENERIC\n") ||
		out != strings.Join(vars, "\n")+"\n" {
		t.Errorf("providers --secret-vars = %d %q", code, out)
	}
	code, out, _ := run("--json")
	var got []providerInfo
	if err := json.Unmarshal([]byte(out), &got); code != ExitOK || err != nil || len(got) != len(names) || got[0].RateLimit <= 0 {
		t.Errorf("providers --json = %d %q %v", code, out, err)
	}
	if code, _, errs := run("extra"); code != ExitError || !strings.Contains(errs, "no arguments") {
		t.Errorf("providers extra = %d %q", code, errs)
	}
}
