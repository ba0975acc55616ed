package cli

import (
	"bufio"
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
)

var (
	buildOnce sync.Once
	builtDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// binary returns the path of a service's binary: from REVIEWPIPE_BIN when
// `make test` set it, else built once for this test run.
func binary(t *testing.T, name string) string {
	t.Helper()
	if dir := os.Getenv("REVIEWPIPE_BIN"); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	buildOnce.Do(func() {
		builtDir, buildErr = os.MkdirTemp("", "reviewctl-test-bin-")
		if buildErr != nil {
			return
		}
		for _, s := range []string{"processor", "sink", "poller"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(builtDir, s),
				"github.com/reviewpipe/reviewpipe/services/"+s).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", s, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(builtDir, name)
}

// service is a service binary running for one test.
type service struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
}

// startService runs a service against the test's stack on a free address
// (addrVar) and waits for its /readyz; cleanup stops it with SIGTERM.
func startService(t *testing.T, st *testenv.Stack, name, addrVar string, extraEnv ...string) *service {
	t.Helper()
	addr := testenv.FreeAddr(t)
	s := &service{name: name, cmd: exec.Command(binary(t, name))}
	s.cmd.Env = append(append(append(os.Environ(), st.Env()...), addrVar+"="+addr, "LOG_LEVEL=info"), extraEnv...)
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
		s.stop()
		if t.Failed() {
			s.mu.Lock()
			t.Logf("--- %s log ---\n%s", name, s.log.String())
			s.mu.Unlock()
		}
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		res, err := http.Get("http://" + addr + "/readyz")
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

func (s *service) stop() {
	if s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}
