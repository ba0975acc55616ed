// Package stack gives one benchmark run its own slice of a running Kafka and
// PostgreSQL (a topic namespace with every topic, a fresh migrated database)
// and runs the built services of bin/ on it as processes, as the end-to-end
// tests do. Close stops the processes and removes the topics and database.
package stack

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
)

// Slice is one run's topics, database and service processes. Not safe for
// concurrent use.
type Slice struct {
	Brokers     []string
	Names       kafkax.Names
	BaseURL     string // the server's DATABASE_URL
	DatabaseURL string // this slice's database
	DB          *pgxpool.Pool
	dbName      string
	procs       []*Proc
}

// New creates a namespace "b<random>." with every topic of kafkax.Specs and
// a migrated database of the same name on baseURL's server. The caller
// calls Close, also when New fails halfway (it is safe on a partial slice).
func New(ctx context.Context, brokers []string, baseURL string) (*Slice, error) {
	id := randomID()
	s := &Slice{Brokers: brokers, Names: kafkax.Names{Namespace: "b" + id + "."}, BaseURL: baseURL}
	if err := kafkax.EnsureTopics(ctx, brokers, s.Names, kafkax.Specs(kafkax.DefaultPartitions), 1); err != nil {
		return s, fmt.Errorf("create topics: %w", err)
	}
	admin, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return s, fmt.Errorf("connect to DATABASE_URL: %w", err)
	}
	defer admin.Close(context.Background())
	name := "bench_" + id
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return s, fmt.Errorf("create database: %w", err)
	}
	s.dbName = name
	u, err := url.Parse(baseURL)
	if err != nil {
		return s, fmt.Errorf("DATABASE_URL: %w", err)
	}
	u.Path = "/" + name
	s.DatabaseURL = u.String()
	if s.DB, err = pgstore.Open(ctx, s.DatabaseURL, 8); err != nil {
		return s, err
	}
	if _, err := pgstore.Migrate(ctx, s.DB); err != nil {
		return s, fmt.Errorf("migrate: %w", err)
	}
	return s, nil
}

// Env is what a service needs to run on this slice.
func (s *Slice) Env() []string {
	return []string{
		"KAFKA_BROKERS=" + strings.Join(s.Brokers, ","),
		"DATABASE_URL=" + s.DatabaseURL,
		"TOPIC_NAMESPACE=" + s.Names.Namespace,
	}
}

// Proc is one service process.
type Proc struct {
	Name string
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	tail []string // last lines of its output, for errors
}

// Start runs binDir/name on a free 127.0.0.1 port given in addrVar, with
// the slice's environment plus extra, and waits up to 60s for /readyz.
func (s *Slice) Start(ctx context.Context, binDir, name, addrVar string, extra ...string) (*Proc, error) {
	return s.start(ctx, 0, false, binDir, name, addrVar, extra...)
}

// StartNice is Start with the process at the given nice level (0: as this
// one), through nice(1) as scripts/run.sh starts the ingest consumers, so
// that every thread of it has the level from its first instruction.
func (s *Slice) StartNice(ctx context.Context, nice int, binDir, name, addrVar string, extra ...string) (*Proc, error) {
	return s.start(ctx, nice, false, binDir, name, addrVar, extra...)
}

// StartAlone is Start with the process in a session of its own, as
// scripts/run.sh starts the api. Where Linux groups processes by session
// for the scheduler (autogroup, on by default), its CPU share is then
// weighed against each other session's (Kafka's, each PostgreSQL
// backend's, the generator's with the other services) rather than inside
// the generator's, where the receiver, the ingest consumers and the
// generator itself crowd it.
func (s *Slice) StartAlone(ctx context.Context, binDir, name, addrVar string, extra ...string) (*Proc, error) {
	return s.start(ctx, 0, true, binDir, name, addrVar, extra...)
}

func (s *Slice) start(ctx context.Context, nice int, alone bool, binDir, name, addrVar string, extra ...string) (*Proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &Proc{Name: name, Addr: addr, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, name))
	if nice > 0 {
		p.cmd = exec.Command("nice", "-n", strconv.Itoa(nice), filepath.Join(binDir, name))
	}
	if alone {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	p.cmd.Env = append(append(append(os.Environ(), s.Env()...), addrVar+"="+addr, "LOG_LEVEL=warn"), extra...)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s.procs = append(s.procs, p)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.tail = append(p.tail, sc.Text())
			if len(p.tail) > 20 {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
		}
		_ = p.cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited at start: %s", name, p.Tail())
		case <-ctx.Done():
			return nil, ctx.Err()
		default:
		}
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s not ready within 60s: %v %s", name, err, p.Tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is the process's base URL.
func (p *Proc) URL() string { return "http://" + p.Addr }

// Tail returns the last lines the process wrote.
func (p *Proc) Tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// Stop sends SIGTERM and waits up to 15s, then kills.
func (p *Proc) Stop() {
	if p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// StopServices stops every process started on the slice, in reverse order.
func (s *Slice) StopServices() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop()
	}
	s.procs = nil
}

// Close stops the services and removes the database and topics.
func (s *Slice) Close() error {
	s.StopServices()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []error
	if s.DB != nil {
		s.DB.Close()
	}
	if s.dbName != "" {
		if c, err := pgx.Connect(ctx, s.BaseURL); err != nil {
			errs = append(errs, err)
		} else {
			if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{s.dbName}.Sanitize()+" WITH (FORCE)"); err != nil {
				errs = append(errs, fmt.Errorf("drop database: %w", err))
			}
			c.Close(context.Background())
		}
	}
	if err := kafkax.DeleteTopics(ctx, s.Brokers, s.Names, kafkax.Specs(kafkax.DefaultPartitions)); err != nil {
		errs = append(errs, fmt.Errorf("delete topics: %w", err))
	}
	return errors.Join(errs...)
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// CPUSample is the CPU time (user + system, seconds) of each process of
// interest by name and pid: "loadgen", each running service, and the
// machine's Kafka brokers (a JVM running kafka.Kafka) and PostgreSQL
// processes (the postmaster and its backends) as "kafka" and "postgres".
type CPUSample map[string]map[int]float64

// CPUSample reads /proc (Linux); processes it cannot read are left out.
func (s *Slice) CPUSample() CPUSample {
	out := CPUSample{}
	add := func(name string, pid int, path string) {
		if v, ok := ProcCPU(path); ok {
			if out[name] == nil {
				out[name] = map[int]float64{}
			}
			out[name][pid] = v
		}
	}
	for _, p := range s.procs {
		if p.cmd.Process != nil {
			add(p.Name, p.cmd.Process.Pid, "/proc/"+strconv.Itoa(p.cmd.Process.Pid)+"/stat")
		}
	}
	add("loadgen", os.Getpid(), "/proc/self/stat")
	infraCPU(add)
	return out
}

// CPUDelta is the CPU seconds each name used from a to b: per process
// alive at b, its time less what it had at a (all of it when it started
// in between). A process that exited in between takes what it used since a
// with it, so a figure with short-lived processes (PostgreSQL backends) is
// a lower bound; one that exited never turns a figure negative.
func CPUDelta(a, b CPUSample) map[string]float64 {
	out := map[string]float64{}
	for name, pids := range b {
		for pid, v := range pids {
			out[name] += v - a[name][pid]
		}
	}
	return out
}

// infraCPU calls add with each Kafka broker ("kafka") and PostgreSQL
// process ("postgres") of the machine.
func infraCPU(add func(name string, pid int, statPath string)) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		base := "/proc/" + d.Name()
		var name string
		if comm, err := os.ReadFile(base + "/comm"); err == nil && strings.TrimSpace(string(comm)) == "postgres" {
			name = "postgres"
		} else if comm := strings.TrimSpace(string(comm)); comm == "java" {
			if cmd, err := os.ReadFile(base + "/cmdline"); err == nil && strings.Contains(string(cmd), "kafka.Kafka") {
				name = "kafka"
			}
		}
		if name != "" {
			add(name, pid, base+"/stat")
		}
	}
}

// MachineBusySeconds is the CPU time all processes of the machine have used
// (every core, /proc/stat: all but idle and iowait).
func MachineBusySeconds() (float64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, false
	}
	var busy float64
	for i, x := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest times are already in user
			break
		}
		v, _ := strconv.ParseFloat(x, 64)
		busy += v
	}
	return busy / clockTicks, true
}

// clockTicks is USER_HZ, 100 on every Linux the project runs on.
const clockTicks = 100

// ProcCPU is the user + system CPU seconds of the process whose
// /proc/PID/stat is at path.
func ProcCPU(path string) (float64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b)[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks, true
}
