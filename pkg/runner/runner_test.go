package runner

import (
	"context"
	"net/http"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/reviewpipe/reviewpipe/pkg/obs"
)

// Every service serves through Group.Serve, so every service's /metrics
// needs OPS_TOKEN when it is set (docs/contract.md §8), and /healthz stays public.
func TestServeGuardsMetricsWithOpsToken(t *testing.T) {
	t.Setenv("OPS_TOKEN", "runner-test-token")
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	g := NewGroup(ctx)
	if err := g.Serve("127.0.0.1:0", obs.NewRegistry(), &obs.Health{}, zap.New(core), nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("wait: %v", err)
		}
	}()
	listening := logs.FilterMessage("listening").All()
	if len(listening) != 1 {
		t.Fatalf("log: %v", logs.All())
	}
	base := "http://" + listening[0].ContextMap()["addr"].(string)
	for _, tc := range []struct {
		path, auth string
		code       int
	}{
		{"/metrics", "", 401},
		{"/metrics", "Bearer wrong", 401},
		{"/metrics", "Bearer runner-test-token", 200},
		{"/healthz", "", 200},
		{"/readyz", "", 200},
	} {
		req, _ := http.NewRequest("GET", base+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.code {
			t.Errorf("%s with %q: %d, want %d", tc.path, tc.auth, res.StatusCode, tc.code)
		}
	}
}
