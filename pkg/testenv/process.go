package testenv

import (
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
)

var (
	buildMu  sync.Mutex
	builtDir string
	built    = map[string]string{}
)

// Binary returns the path of service name's binary: bin/<name> from
// REVIEWPIPE_BIN when `make test` set it, else services/<name> built once
// per test process into a temporary folder (removed by RemoveBinaries).
func Binary(t testing.TB, name string) string {
	t.Helper()
	if dir := os.Getenv("REVIEWPIPE_BIN"); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	if builtDir == "" {
		d, err := os.MkdirTemp("", "reviewpipe-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		builtDir = d
	}
	p := filepath.Join(builtDir, name)
	out, err := exec.Command("go", "build", "-o", p, "github.com/reviewpipe/reviewpipe/services/"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	built[name] = p
	return p
}

// RemoveBinaries deletes what Binary built; call it from TestMain after m.Run.
func RemoveBinaries() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if builtDir != "" {
		_ = os.RemoveAll(builtDir)
		builtDir, built = "", map[string]string{}
	}
}

// Proc is a binary running as a process for one test. Its output is kept
// and printed if the test fails. Safe for concurrent use.
type Proc struct {
	Name string
	// Addr is the address given in the service's *_ADDR variable (Service).
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	once sync.Once
	mu   sync.Mutex
	out  strings.Builder
}

// Spawn starts bin with the process environment plus env, without waiting
// for anything. Cleanup stops it (SIGTERM, then SIGKILL after 15s).
func Spawn(t testing.TB, name, bin string, env ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, cmd: exec.Command(bin), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.Output())
		}
	})
	return p
}

// Service starts service name's binary against st, listening on a free
// address given in addrVar, and waits until its /readyz answers 200.
func Service(t testing.TB, st *Stack, name, addrVar string, env ...string) *Proc {
	t.Helper()
	addr := FreeAddr(t)
	e := append(append([]string{}, st.Env()...), addrVar+"="+addr, "LOG_LEVEL=info")
	p := Spawn(t, name, Binary(t, name), append(e, env...)...)
	p.Addr = addr
	p.WaitReady(t, "/readyz")
	return p
}

// Write keeps the process's output.
func (p *Proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output is everything the process printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// URL is "http://" + Addr.
func (p *Proc) URL() string { return "http://" + p.Addr }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitReady polls GET URL()+path until it answers 200 (30s at most),
// failing at once if the process exits.
func (p *Proc) WaitReady(t testing.TB, path string) {
	t.Helper()
	Eventually(t, 30*time.Second, func() error {
		if p.Exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.Name, p.err, p.Output())
		}
		res, err := http.Get(p.URL() + path)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s answered %d", p.Name, path, res.StatusCode)
		}
		return nil
	})
}

// Stop sends SIGTERM and waits for the exit (SIGKILL after 15s). It returns
// the exit error, or an error saying SIGTERM was ignored. Idempotent.
func (p *Proc) Stop() error {
	var ignored bool
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			ignored = true
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	<-p.done
	if ignored {
		return fmt.Errorf("%s ignored SIGTERM for 15s", p.Name)
	}
	return p.err
}

// Kill sends SIGKILL, as a crash would, and waits for the exit.
func (p *Proc) Kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	<-p.done
}
