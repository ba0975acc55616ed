package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/reconcile"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/testlog"
)

// TestReconcileLoad measures reconcile on a generated log: it runs only
// with REVIEWCTL_LOAD_EVENTS set (for example 1000000). The log holds that
// many raw events over a fifth as many reviews (REVIEWCTL_LOAD_VERSIONS,
// default 5, versions each; one review in ten deleted at its last), the
// store the matching rows; the
// built reviewctl binary reconciles them and the test reports records/s,
// the whole run's time and the process's peak RSS.
//
//	REVIEWCTL_LOAD_EVENTS=1000000 go test -run TestReconcileLoad -timeout 30m -v ./internal/cli/
func TestReconcileLoad(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("REVIEWCTL_LOAD_EVENTS"))
	if n <= 0 {
		t.Skip("set REVIEWCTL_LOAD_EVENTS (e.g. 1000000) to run the reconcile load measurement")
	}
	st := newStack(t)
	ctx := context.Background()
	versions := 5
	if v, _ := strconv.Atoi(os.Getenv("REVIEWCTL_LOAD_VERSIONS")); v > 0 {
		versions = v
	}
	keys := n / versions
	body := bytes.Repeat([]byte("A quietly devastating film about hope. "), 5)[:180]

	start := time.Now()
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicRaw)})
	w.BatchBytes = 900 << 10 // under the broker's 1 MiB message.max.bytes
	w.BatchTimeout = 20 * time.Millisecond
	chunk := make([]kafka.Message, 0, 20000)
	flush := func() {
		if err := w.WriteMessages(ctx, chunk...); err != nil {
			t.Fatal(shorten(err.Error(), 300))
		}
		chunk = chunk[:0]
	}
	for v := 1; v <= versions; v++ {
		for k := range keys {
			del := v == versions && k%10 == 0 && versions > 1
			chunk = append(chunk, testlog.RawMessage(fmt.Sprintf("load-%08d", k), int64(v), del, string(body), fmt.Sprintf("evt_%d_%d", k, v)))
			if len(chunk) == cap(chunk) {
				flush()
			}
		}
	}
	flush()
	w.Close()
	t.Logf("produced %d raw events over %d reviews in %s", keys*versions, keys, time.Since(start).Round(time.Millisecond))

	// The store as the sink leaves it: each review's last version.
	start = time.Now()
	reg := provider.Default()
	rows := make([][]any, 0, keys)
	for k := range keys {
		del := k%10 == 0 && versions > 1
		m := testlog.RawMessage(fmt.Sprintf("load-%08d", k), int64(versions), del, string(body), "x")
		ev, _, err := normalizeRecord(reg, &m, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		r := ev.Review
		var rating any
		if r.Rating != nil {
			rating = int16(*r.Rating)
		}
		rows = append(rows, []any{r.ID, r.Provider, r.ExternalID, r.MovieID, r.Author, rating, r.Title, r.Body, r.Language,
			r.URL, r.Version, del, dedupe.EntryOf(ev, -1).HashString(), r.SourceUpdatedAt, r.IngestedAt})
	}
	if _, err := st.DB.CopyFrom(ctx, pgx.Identifier{"reviews"}, []string{"id", "provider", "external_id", "movie_id", "author",
		"rating", "title", "body", "language", "url", "version", "deleted", "content_hash", "source_updated_at", "ingested_at"},
		pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	rows = nil
	t.Logf("wrote %d store rows in %s", keys, time.Since(start).Round(time.Millisecond))

	bin := filepath.Join(t.TempDir(), "reviewctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/reviewpipe/reviewpipe/services/reviewctl").CombinedOutput(); err != nil {
		t.Fatalf("go build reviewctl: %v\n%s", err, out)
	}
	// Peak RSS through /usr/bin/time: a child's own rusage would count the
	// test process's memory, which Linux carries over into a child's
	// maxrss across exec.
	args := []string{"reconcile", "--json", "--settle", "0", "--examples", "2"}
	cmd := exec.Command(bin, args...)
	timed := false
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		cmd, timed = exec.Command("/usr/bin/time", append([]string{"-f", "maxrss_kb=%M", bin}, args...)...), true
	}
	cmd.Env = append(os.Environ(), st.Env()...)
	if g := os.Getenv("REVIEWCTL_LOAD_GODEBUG"); g != "" {
		cmd.Env = append(cmd.Env, "GODEBUG="+g)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start = time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var rep reconcile.Report
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil || err != nil {
		t.Fatalf("reconcile: %v / %v\n%s\n%s", err, jerr, out.String(), errb.String())
	}
	if os.Getenv("REVIEWCTL_LOAD_GODEBUG") != "" {
		t.Logf("reconcile stderr:\n%s", errb.String())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	rss := "unknown (no /usr/bin/time)"
	if i := strings.LastIndex(errb.String(), "maxrss_kb="); timed && i >= 0 {
		kb, _ := strconv.Atoi(strings.TrimSpace(errb.String()[i+len("maxrss_kb="):]))
		rss = fmt.Sprintf("%d MiB", kb/1024)
	}
	t.Logf("reconcile of %d records, %d reviews, %d rows: exit %d, drift %d; read+fold %.2fs = %.0f records/s; "+
		"whole run %.2fs (%.0f records/s); cpu user %.2fs sys %.2fs; peak RSS %s",
		rep.Read.Records, rep.Read.Reviews, rep.StoreRows, cmd.ProcessState.ExitCode(), rep.Drift, rep.Read.Seconds,
		rep.Read.RecordsPerSec, wall.Seconds(), float64(rep.Read.Records)/wall.Seconds(),
		time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds(), rss)
	if rep.Drift != 0 || rep.Read.Records != int64(keys*versions) || rep.InSync != keys {
		t.Fatalf("reconcile of the generated log: drift %d, records %d, in sync %d", rep.Drift, rep.Read.Records, rep.InSync)
	}
}
