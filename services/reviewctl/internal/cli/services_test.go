package cli

import (
	"os"
	"testing"

	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

// startService runs a service binary against the test's stack on a free
// address (addrVar) and waits for its /readyz; cleanup stops it.
func startService(t *testing.T, st *testenv.Stack, name, addrVar string, extraEnv ...string) *testenv.Proc {
	t.Helper()
	return testenv.Service(t, st, name, addrVar, extraEnv...)
}
