package load

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/reviewpipe/reviewpipe/bench/internal/stack"
)

// FloorFlag, as the first argument of the load generator's own binary,
// makes it the floor's server (ServeFloor) instead of a benchmark.
const FloorFlag = "-serve-http-floor"

// ServeFloor is the HTTP floor's server: net/http on a free loopback port,
// printed on stdout, answering every GET of a movie page with the same
// size bytes, ETag and Cache-Control, as the api's cache does, and nothing
// else: no routing beyond the mux, no metrics, no logs. It serves until
// stdin closes (its parent is gone).
func ServeFloor(size int) error {
	body := []byte(`{"reviews":[` + strings.Repeat(" ", max(0, size-14)) + `]}`)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/movies/{id}/reviews", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("ETag", `"0123456789abcdef"`)
		h.Set("Cache-Control", "public, max-age=5, stale-while-revalidate=10")
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	return http.Serve(ln, mux)
}

// HTTPFloor measures what net/http itself costs per read on this machine:
// the load generator's binary (exe) started as ServeFloor with answers of
// size bytes, read at rate over movies for d by the same reader as the
// api's read phases. It returns the floor process's CPU microseconds per
// request and the reads' summary. The api's CPU per read can only come
// down to this with net/http, whatever it caches.
func HTTPFloor(ctx context.Context, exe string, size int, rate float64, movies int, d time.Duration) (float64, Summary, error) {
	f, err := startFloor(ctx, exe, size)
	if err != nil {
		return 0, Summary{}, err
	}
	defer f.stop()
	client, err := NewClient("http://"+f.addr, 1024)
	if err != nil {
		return 0, Summary{}, err
	}
	defer client.Close()
	stat := "/proc/" + strconv.Itoa(f.cmd.Process.Pid) + "/stat"
	Reader(ctx, client, rate, movies, time.Second) // connections open, code paged in
	before, ok := stack.ProcCPU(stat)
	reads := Summarize(Reader(ctx, client, rate, movies, d))
	after, ok2 := stack.ProcCPU(stat)
	if !ok || !ok2 || reads.Count == 0 {
		return 0, reads, fmt.Errorf("no CPU time or no reads of the floor server (%d reads)", reads.Count)
	}
	return (after - before) * 1e6 / float64(reads.Count), reads, nil
}

// floorServer is a running ServeFloor process.
type floorServer struct {
	cmd   *exec.Cmd
	stdin io.Closer
	addr  string
}

// startFloor starts exe as ServeFloor with answers of size bytes and
// returns once it said its address.
func startFloor(ctx context.Context, exe string, size int) (*floorServer, error) {
	cmd := exec.CommandContext(ctx, exe, FloorFlag, strconv.Itoa(size))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // as the api runs (-api-alone)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the floor server: %w", err)
	}
	f := &floorServer{cmd: cmd, stdin: stdin}
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		f.stop()
		return nil, fmt.Errorf("the floor server did not say its address: %w", err)
	}
	f.addr = strings.TrimSpace(addr)
	return f, nil
}

// stop ends the server (it exits when its stdin closes) and waits for it.
func (f *floorServer) stop() {
	f.stdin.Close()
	_ = f.cmd.Wait()
}
