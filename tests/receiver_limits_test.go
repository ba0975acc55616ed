package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// The receiver's limits of docs/contract.md §2 and §8, end to end through the
// built receiver and reviewctl.

// raiseFileLimit lifts the soft limit on open files to the hard one, or
// to at least want when that is allowed: the test holds hundreds of
// connections.
func raiseFileLimit(t *testing.T, want uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= want {
		return
	}
	lim.Cur = min(max(want, lim.Cur), lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < want {
		t.Fatalf("open files limited to %d, the test needs %d: %v", lim.Cur, want, err)
	}
}

// metric reads one sample of the process's /metrics (no OPS_TOKEN is set).
func metric(t *testing.T, url, sample string) float64 {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// docs/contract.md §8, slow clients: 300 connections from 127.0.0.1 announce 1 MiB
// bodies and send a byte every 300ms; while they are all being read, every
// signed delivery is answered 2xx within a second. Then each slow one is
// answered 408 (or closed) after WEBHOOK_BODY_TIMEOUT.
func TestSlowClientsDoNotDelaySignedDeliveries(t *testing.T) {
	const (
		slow        = 300
		bodyTimeout = 6 * time.Second
	)
	raiseFileLimit(t, 4*slow)
	st := testenv.New(t)
	receiver := startService(t, st, "receiver", "RECEIVER_ADDR",
		append(secretEnv(), "WEBHOOK_BODY_TIMEOUT="+bodyTimeout.String(), "LOG_LEVEL=warn")...)

	head := "POST /webhooks/generic HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n" +
		"Content-Length: 1048576\r\nwebhook-id: slow\r\nwebhook-timestamp: " + strconv.FormatInt(time.Now().Unix(), 10) +
		"\r\nwebhook-signature: v1,bm90LWEtc2lnbmF0dXJl\r\n\r\n{"
	conns := make([]net.Conn, 0, slow)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range slow {
		c, err := net.Dial("tcp", receiver.Addr)
		if err != nil {
			t.Fatalf("slow connection %d: %v", len(conns), err)
		}
		if _, err := c.Write([]byte(head)); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Trickle: a byte on each every 300ms, until the test is done with
	// them (at most 2 body timeouts).
	stop := make(chan struct{})
	var trickle sync.WaitGroup
	trickle.Go(func() {
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		end := time.After(2 * bodyTimeout)
		for {
			select {
			case <-stop:
				return
			case <-end:
				return
			case <-tick.C:
				for _, c := range conns {
					_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
					_, _ = c.Write([]byte(" "))
				}
			}
		}
	})
	defer func() { close(stop); trickle.Wait() }()
	started := time.Now()
	// Every slow request reached the receiver: its body is being read (or,
	// were it holding capacity, some were refused already).
	testenv.Eventually(t, bodyTimeout/2, func() error {
		reading := metric(t, receiver.URL(), "reviewpipe_webhook_reading_bodies")
		refused := metric(t, receiver.URL(), `reviewpipe_webhook_answers_total{code="429",provider="generic"}`)
		if reading+refused != slow {
			return fmt.Errorf("%v bodies being read and %v refused, want the %d slow ones", reading, refused, slow)
		}
		return nil
	})

	var took []time.Duration
	for i := 0; time.Since(started) < bodyTimeout-1500*time.Millisecond; i++ {
		id := fmt.Sprintf("signed-%s-%d", testenv.RandomID(), i)
		start := time.Now()
		code, ans := webhookAnswer(t, receiver.URL(), id, string(genericUpsert(t, id, "tt0000046", nil)))
		d := time.Since(start)
		if code != http.StatusOK {
			t.Fatalf("signed delivery %d during the flood: %d %v", i, code, ans)
		}
		if d > time.Second {
			t.Fatalf("signed delivery %d took %s during the flood, want under 1s", i, d)
		}
		took = append(took, d)
		time.Sleep(100 * time.Millisecond) // the provider's pace
	}
	if n := metric(t, receiver.URL(), "reviewpipe_webhook_reading_bodies"); n != slow {
		t.Fatalf("%v slow bodies still being read after the signed deliveries, want %d: the flood did not hold", n, slow)
	}
	slices.Sort(took)
	t.Logf("%d signed deliveries beside %d slow connections: median %s, max %s", len(took), slow, took[len(took)/2], took[len(took)-1])
	if len(took) < 10 {
		t.Fatalf("only %d signed deliveries were sent during the flood", len(took))
	}

	// Every slow connection ends: 408, or closed, soon after its timeout.
	status := regexp.MustCompile(`^HTTP/1\.1 (\d{3}) `)
	var mu sync.Mutex
	outcomes := map[string]int{}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(started.Add(bodyTimeout + 5*time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			outcome := "closed"
			if m := status.FindStringSubmatch(line); m != nil {
				outcome = m[1]
			} else if err != nil && !isClosed(err) {
				outcome = err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			outcomes[outcome]++
		})
	}
	wg.Wait()
	if outcomes["408"]+outcomes["closed"] != slow {
		t.Fatalf("slow connections ended %v, want each answered 408 or closed", outcomes)
	}
	t.Logf("slow connections: %v", outcomes)
}

func isClosed(err error) bool {
	return err == io.EOF || strings.Contains(err.Error(), "connection reset")
}

// reviewctl runs bin/reviewctl against st and returns its stdout.
func reviewctl(t *testing.T, st *testenv.Stack, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t, "reviewctl"), args...)
	cmd.Env = st.Env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("reviewctl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// docs/contract.md §2 and §8, dead letters keep the body byte for byte: a signed
// body of WEBHOOK_MAX_BODY − 1 bytes that is not JSON, and a Latin-1 body,
// are answered 400 with dead_letter_id, and `reviewctl dlq show ID --raw`
// writes exactly the bytes sent; one byte over the limit is 413. The same
// refused delivery sent again gets the same 400 and no second dead letter.
func TestRefusedBodiesKeptByteForByte(t *testing.T) {
	st := testenv.New(t)
	receiver := startService(t, st, "receiver", "RECEIVER_ADDR", secretEnv()...)
	run := testenv.RandomID()
	const maxBody = 1 << 20

	notJSON := make([]byte, maxBody-1)
	for i := range notJSON {
		notJSON[i] = byte(i*7 + i/251) // every byte value, no JSON, no UTF-8
	}
	latin1 := []byte(`{"type":"review.upserted","data":{"review_id":"l1","version":1,"updated_at":"2026-11-20T10:00:00Z",` +
		`"movie":{"imdb_id":"tt0000047","title":"Caf` + "\xe9" + ` de la Gare"},"author":"Ren` + "\xe9" + `e","body":"tr` + "\xe8" + `s bien"}}`)

	sent := map[string][]byte{}
	for _, c := range []struct {
		name string
		body []byte
	}{{"not-json", notJSON}, {"latin1", latin1}} {
		id := c.name + "-" + run
		code, ans := webhookAnswer(t, receiver.URL(), id, string(c.body))
		dl, _ := ans["dead_letter_id"].(string)
		if code != http.StatusBadRequest || dl == "" || ans["error"] == "" {
			t.Fatalf("%s body of %d bytes: %d %v, want 400 with error and dead_letter_id", c.name, len(c.body), code, ans)
		}
		if got := reviewctl(t, st, "dlq", "show", dl, "--raw"); !bytes.Equal(got, c.body) {
			t.Fatalf("%s: dlq show --raw wrote %d bytes, not the %d sent", c.name, len(got), len(c.body))
		}
		// Again, with a new signature: the same answer, nothing new kept.
		code2, ans2 := webhookAnswer(t, receiver.URL(), id, string(c.body))
		if code2 != code || fmt.Sprint(ans2) != fmt.Sprint(ans) {
			t.Fatalf("%s sent again: %d %v, want the same %d %v", c.name, code2, ans2, code, ans)
		}
		sent[dl] = c.body
	}
	over := append(slices.Clone(notJSON), 'x', 'y')
	if code, ans := webhookAnswer(t, receiver.URL(), "over-"+run, string(over)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body of WEBHOOK_MAX_BODY + 1 bytes: %d %v, want 413", code, ans)
	}
	dls := deadLetters(t, st)
	if len(dls) != len(sent) {
		t.Fatalf("%d dead letters, want one per refused body (%d)", len(dls), len(sent))
	}
	for _, d := range dls {
		if body, ok := sent[d.ID]; !ok || !bytes.Equal(d.RecordBytes(), body) {
			t.Fatalf("dead letter %s does not hold a body sent", d.ID)
		}
	}
}
