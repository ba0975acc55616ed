package tests

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

// service is one binary of bin/ running as a process for a test.
type service struct {
	name string
	addr string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
}

// binDir is where `make build` put the binaries (REVIEWPIPE_BIN under make test).
func binDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("REVIEWPIPE_BIN")
	if dir == "" {
		dir, _ = filepath.Abs("../bin")
	}
	if _, err := os.Stat(filepath.Join(dir, "receiver")); err != nil {
		if os.Getenv("REVIEWPIPE_INTEGRATION") == "1" {
			t.Fatalf("binaries not found in %s: run make build", dir)
		}
		t.Skipf("binaries not found in %s: run make build (make test does)", dir)
	}
	return dir
}

// startService runs bin/name with the stack's environment plus extra, on a
// free address given in addrVar, and waits for /readyz.
func startService(t *testing.T, st *testenv.Stack, name, addrVar string, extra ...string) *service {
	t.Helper()
	s := &service{name: name, addr: testenv.FreeAddr(t)}
	s.cmd = exec.Command(filepath.Join(binDir(t), name))
	s.cmd.Env = append(append(append(os.Environ(), st.Env()...), addrVar+"="+s.addr, "LOG_LEVEL=info"), extra...)
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			s.mu.Lock()
			t.Logf("--- %s log ---\n%s", name, s.log.String())
			s.mu.Unlock()
		}
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		if s.cmd.ProcessState != nil {
			return fmt.Errorf("%s exited", name)
		}
		res, err := http.Get("http://" + s.addr + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /readyz answered %d", name, res.StatusCode)
		}
		return nil
	})
	return s
}

// stop sends SIGTERM and waits for a clean exit (SIGKILL after 15s).
func (s *service) stop(t *testing.T) {
	if s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s did not exit cleanly on SIGTERM: %v", s.name, err)
		}
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
		t.Errorf("%s ignored SIGTERM for 15s", s.name)
	}
}

// url returns the service's base URL.
func (s *service) url() string { return "http://" + s.addr }

// testSecret is the webhook key of the processes under test.
var testSecret = []byte("e2e-test-webhook-key-0123456789")

func secretEnv() []string {
	s := webhook.FormatSecret(testSecret)
	return []string{"WEBHOOK_SECRET_GENERIC=" + s, "WEBHOOK_SECRET_CINESCORE=" + s, "WEBHOOK_SECRET_REELPULSE=" + s}
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
