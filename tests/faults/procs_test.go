package faults

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

// testSecret signs the load's webhooks (and the simulator's).
var testSecret = []byte("faults-webhook-key-0123456789abc")

func secretEnv() []string {
	s := webhook.FormatSecret(testSecret)
	var out []string
	for _, v := range provider.SecretVars() {
		out = append(out, v+"="+s)
	}
	return out
}

// proc is one service of bin/ run as a process, restartable on the same
// address. Its output goes to a log file per start in env.logDir.
type proc struct {
	e       *env
	name    string // binary
	label   string // instance name in logs
	addrVar string
	addr    string
	extra   []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
}

func newProc(t *testing.T, e *env, name, label, addrVar string, extra ...string) *proc {
	p := &proc{e: e, name: name, label: label, addrVar: addrVar, addr: testenv.FreeAddr(t), extra: extra}
	t.Cleanup(func() { p.terminate(t) })
	return p
}

func (p *proc) url() string { return "http://" + p.addr }

// start runs the process and waits (up to limit) for /readyz to answer 200.
func (p *proc) start(t *testing.T, limit time.Duration) {
	t.Helper()
	p.mu.Lock()
	p.starts++
	logPath := filepath.Join(p.e.logDir, fmt.Sprintf("%s.%d.log", p.label, p.starts))
	f, err := os.Create(logPath)
	if err != nil {
		p.mu.Unlock()
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(p.e.bin, p.name))
	cmd.Env = append(append(append(os.Environ(), p.e.serviceEnv()...), p.addrVar+"="+p.addr), p.extra...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		f.Close()
		t.Fatalf("start %s: %v", p.label, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	if err := p.waitReady(limit); err != nil {
		t.Fatalf("%s: %v (log %s)", p.label, err, logPath)
	}
}

func (p *proc) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		select {
		case <-done:
			return fmt.Errorf("exited before it was ready")
		default:
		}
		res, err := client.Get(p.url() + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz answered %d", res.StatusCode)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %s: %v", limit, last)
}

// running reports whether the process is up.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill9 sends SIGKILL and waits for the process to be gone.
func (p *proc) kill9() {
	p.signal(syscall.SIGKILL, 10*time.Second)
}

// stop sends SIGTERM and waits up to 20s (then SIGKILL); it reports
// whether the process exited on SIGTERM in time.
func (p *proc) stop() bool {
	return p.signal(syscall.SIGTERM, 20*time.Second)
}

func (p *proc) signal(sig syscall.Signal, wait time.Duration) bool {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return true
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
		return false
	}
}

func (p *proc) terminate(t *testing.T) {
	if p.running() && !p.stop() {
		t.Logf("%s ignored SIGTERM for 20s; killed", p.label)
	}
}
