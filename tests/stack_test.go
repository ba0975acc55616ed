package tests

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

// startService runs bin/name against st (testenv.Service) and checks, when
// the test ends, that it exits cleanly on SIGTERM.
func startService(t *testing.T, st *testenv.Stack, name, addrVar string, extra ...string) *testenv.Proc {
	t.Helper()
	p := testenv.Service(t, st, name, addrVar, extra...)
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("%s did not exit cleanly on SIGTERM: %v", name, err)
		}
	})
	return p
}

// testSecret is the webhook key of the processes under test.
var testSecret = []byte("e2e-test-webhook-key-0123456789")

func secretEnv() []string {
	s := webhook.FormatSecret(testSecret)
	var out []string
	for _, v := range provider.SecretVars() {
		out = append(out, v+"="+s)
	}
	return out
}

func postWebhook(t *testing.T, receiver, providerName, id, body string, key []byte) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, receiver+"/webhooks/"+providerName, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	webhook.SetHeaders(req.Header, key, id, time.Now(), []byte(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}
