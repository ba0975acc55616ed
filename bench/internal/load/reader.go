package load

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ReaderFlag, as the first argument of the load generator's own binary,
// makes it a reader process (ServeReader) instead of a benchmark.
const ReaderFlag = "-read-pages"

// ServeReader is the reader as a process of its own: Reader against base at
// rate over movies for d, each sample then written to out as a line of
// "at latency code late" (nanoseconds).
func ServeReader(ctx context.Context, base string, rate float64, movies int, d time.Duration, out io.Writer) error {
	client, err := NewClient(base, 1024)
	if err != nil {
		return err
	}
	defer client.Close()
	w := bufio.NewWriter(out)
	for _, s := range Reader(ctx, client, rate, movies, d) {
		fmt.Fprintf(w, "%d %d %d %d\n", s.At, s.Latency, s.Code, s.Late)
	}
	return w.Flush()
}

// ReaderArgs are ServeReader's arguments after ReaderFlag.
func ReaderArgs(base string, rate float64, movies int, d time.Duration) []string {
	return []string{base, strconv.FormatFloat(rate, 'f', -1, 64), strconv.Itoa(movies), d.String()}
}

// ParseReaderArgs reads ReaderArgs back.
func ParseReaderArgs(args []string) (base string, rate float64, movies int, d time.Duration, err error) {
	if len(args) != 4 {
		return "", 0, 0, 0, fmt.Errorf("%s wants URL RATE MOVIES DURATION, got %q", ReaderFlag, args)
	}
	base = args[0]
	if rate, err = strconv.ParseFloat(args[1], 64); err == nil {
		if movies, err = strconv.Atoi(args[2]); err == nil {
			d, err = time.ParseDuration(args[3])
		}
	}
	return base, rate, movies, d, err
}

// ReaderApart runs the reader as the load generator's binary exe in a
// session of its own (ServeReader), as a client on another machine would
// be: under Linux autogroup the wait for a CPU it then adds to each read
// is its own, not that of the generator's session, which the webhook
// senders and the receiver and ingest consumers fill. It returns the
// samples.
func ReaderApart(ctx context.Context, exe, base string, rate float64, movies int, d time.Duration) ([]Sample, error) {
	cmd := exec.CommandContext(ctx, exe, append([]string{ReaderFlag}, ReaderArgs(base, rate, movies, d)...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("the reader process: %w", err)
	}
	return parseSamples(string(out))
}

// parseSamples reads ServeReader's lines.
func parseSamples(text string) ([]Sample, error) {
	var samples []Sample
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		var at, latency, late int64
		var code int
		if _, err := fmt.Sscanf(line, "%d %d %d %d", &at, &latency, &code, &late); err != nil {
			return nil, fmt.Errorf("reader line %q: %w", line, err)
		}
		samples = append(samples, Sample{At: time.Duration(at), Latency: time.Duration(latency), Code: code, Late: time.Duration(late)})
	}
	return samples, nil
}
