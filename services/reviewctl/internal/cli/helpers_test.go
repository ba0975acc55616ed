package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/kafkalog"
)

// newStack gives the test its own topics and database and points the
// CLI's environment at them.
func newStack(t *testing.T) *testenv.Stack {
	t.Helper()
	st := testenv.New(t)
	t.Setenv("KAFKA_BROKERS", strings.Join(st.Brokers, ","))
	t.Setenv("DATABASE_URL", st.DatabaseURL)
	t.Setenv("TOPIC_NAMESPACE", st.Names.Namespace)
	return st
}

// cliResult is what one in-process run of reviewctl gave.
type cliResult struct {
	code           int
	stdout, stderr string
}

// newApp is reviewctl as the binary builds it, writing to out and errb.
func newApp(out, errb io.Writer) App {
	return App{Out: out, Err: errb, Providers: provider.Default}
}

// run runs reviewctl in-process, as a user would from a shell.
func run(t *testing.T, args ...string) cliResult {
	t.Helper()
	return runApp(t, newApp(nil, nil), args...)
}

// runApp runs app in-process with the given arguments; its writers are
// replaced by buffers.
func runApp(t *testing.T, app App, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	app.Out, app.Err = &out, &errb
	code := app.Run(ctx, args)
	t.Logf("reviewctl %s -> exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return cliResult{code, out.String(), errb.String()}
}

// runJSON runs reviewctl and decodes its stdout into v.
func runJSON(t *testing.T, v any, args ...string) cliResult {
	t.Helper()
	return runAppJSON(t, newApp(nil, nil), v, args...)
}

// runAppJSON runs app and decodes its stdout into v.
func runAppJSON(t *testing.T, app App, v any, args ...string) cliResult {
	t.Helper()
	r := runApp(t, app, args...)
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("reviewctl %s: stdout is not JSON: %v", strings.Join(args, " "), err)
	}
	return r
}

// produce writes msgs to the test's topic t with acks=all.
func produce(t *testing.T, st *testenv.Stack, topic kafkax.Topic, msgs ...kafka.Message) {
	t.Helper()
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(topic)})
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(msgs) > 0 {
		n := min(len(msgs), 1000)
		if err := w.WriteMessages(ctx, msgs[:n]...); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
		msgs = msgs[n:]
	}
}

// readAll returns every record of the test's topic up to its end now,
// partition by partition.
func readAll(t *testing.T, st *testenv.Stack, topic kafkax.Topic) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lc := kafkalog.New(st.Brokers, st.Topic(topic))
	lc.Parallel = 1
	ss, err := lc.Snapshot(ctx, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out []kafka.Message
	err = lc.Scan(ctx, ss, func(m *kafka.Message) error {
		mu.Lock()
		out = append(out, *m)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// endOffsets sums the end offsets of the test's topic: it grows with every
// record written.
func endOffsets(t *testing.T, st *testenv.Stack, topic kafkax.Topic) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ss, err := kafkalog.New(st.Brokers, st.Topic(topic)).Snapshot(ctx, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range ss {
		n += s.To
	}
	return n
}

// applyGuarded writes a normalized event to the reviews table the way the
// sink does: the greatest change in dedupe's order wins (higher version,
// then a delete over an upsert, then the greater content hash). Tests use
// it to play the sink.
func applyGuarded(ctx context.Context, db *pgxpool.Pool, ev review.Event) (bool, error) {
	r := ev.Review
	e := dedupe.EntryOf(ev, -1)
	var rating any
	if r.Rating != nil {
		rating = *r.Rating
	}
	var movie any
	if r.MovieID != "" {
		movie = r.MovieID
	}
	tag, err := db.Exec(ctx, `INSERT INTO reviews (id, provider, external_id, movie_id, author, rating, title, body,
			language, url, version, deleted, content_hash, source_updated_at, ingested_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
		ON CONFLICT (id) DO UPDATE SET movie_id = coalesce(excluded.movie_id, reviews.movie_id),
			author = excluded.author, rating = excluded.rating, title = excluded.title, body = excluded.body,
			language = excluded.language, url = excluded.url, version = excluded.version, deleted = excluded.deleted,
			content_hash = excluded.content_hash, source_updated_at = excluded.source_updated_at,
			ingested_at = excluded.ingested_at, committed_at = now()
		WHERE excluded.version > reviews.version
		   OR (excluded.version = reviews.version AND excluded.deleted AND NOT reviews.deleted)
		   OR (excluded.version = reviews.version AND excluded.deleted = reviews.deleted
		       AND excluded.content_hash COLLATE "C" > reviews.content_hash COLLATE "C")`,
		r.ID, r.Provider, r.ExternalID, movie, r.Author, rating, r.Title, r.Body, r.Language, r.URL, r.Version,
		ev.Op == review.OpDelete, e.HashString(), r.SourceUpdatedAt, r.IngestedAt)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// tableHash is a digest of the reviews table's visible state (ids,
// versions, deletion, content hashes), for "nothing changed" checks.
func tableHash(t *testing.T, db *pgxpool.Pool) string {
	t.Helper()
	var h string
	err := db.QueryRow(context.Background(), `SELECT coalesce(md5(string_agg(id || '|' || version || '|' || deleted || '|' ||
		content_hash || '|' || body, ',' ORDER BY id)), '') FROM reviews`).Scan(&h)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// normalizeRecord turns a raw record into its canonical event with the
// processor's rule, as the sink would then get it.
func normalizeRecord(reg *provider.Registry, m *kafka.Message, now time.Time) (review.Event, string, error) {
	n := reg.NormalizeRecord(m.Key, m.Value, now)
	return n.Event, string(n.Reason), n.Err
}
