package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/reviewpipe/reviewpipe/pkg/changefeed"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/api/internal/store"
)

// fixture is the API on a test's own database and topics, served as the
// command serves it (with /healthz, /readyz and /metrics), with its
// change listener running.
type fixture struct {
	st  *testenv.Stack
	api *API
	srv *httptest.Server
	url string
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	st := testenv.New(t)
	cfg.Brokers, cfg.Names = st.Brokers, st.Names
	syncw := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicSyncRequests)})
	t.Cleanup(func() { syncw.Close() })
	f := &fixture{st: st}
	f.api, f.srv = serve(t, cfg, store.New(st.DB), syncw, st.DatabaseURL, st.Brokers)
	f.url = f.srv.URL
	testenv.Eventually(t, 10*time.Second, func() error { return f.api.LiveUpdatesReady(context.Background()) })
	return f
}

// serve builds the API and its server as main does.
func serve(t *testing.T, cfg Config, st *store.Store, syncw Writer, databaseURL string, brokers []string) (*API, *httptest.Server) {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	api, err := New(cfg, st, syncw, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	health := &obs.Health{}
	health.Add("postgres", st.Ping)
	health.Add("kafka", func(ctx context.Context) error { _, err := kafkax.Ping(ctx, brokers); return err })
	health.Add("live_updates", api.LiveUpdatesReady)
	mux := http.NewServeMux()
	obs.MountWith(mux, reg, health, obs.MountConfig{OpsToken: cfg.OpsToken, Log: log})
	mux.Handle("/", api.Handler())
	srv := httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = api.RunListener(ctx, databaseURL); close(done) }()
	t.Cleanup(func() {
		_ = api.CloseStreams(context.Background())
		srv.Close()
		cancel()
		<-done
	})
	return api, srv
}

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// insert writes reviews straight into the store and marks their movies
// changed, as the sink would have: in one transaction that notifies
// review_changes. It returns once the api has handled the notifications,
// so that its cache no longer holds the answers from before.
func (f *fixture) insert(t *testing.T, rs ...review.Review) {
	t.Helper()
	ctx := context.Background()
	before := noticesSeen(f.api)
	tx, err := f.st.DB.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	ids := map[string][]string{}
	var movies []string
	for _, r := range rs {
		_, err := tx.Exec(ctx, `INSERT INTO reviews (id, provider, external_id, movie_id, author, rating, title, body,
			language, url, version, content_hash, source_updated_at, ingested_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			r.ID, r.Provider, r.ExternalID, r.MovieID, r.Author, r.Rating, r.Title, r.Body, r.Language, r.URL,
			r.Version, review.ContentHash(review.OpUpsert, r), r.SourceUpdatedAt, r.IngestedAt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO movies VALUES ($1, now())
			ON CONFLICT (movie_id) DO UPDATE SET last_changed_at = now()`, r.MovieID); err != nil {
			t.Fatal(err)
		}
		if ids[r.MovieID] == nil {
			movies = append(movies, r.MovieID)
		}
		ids[r.MovieID] = append(ids[r.MovieID], r.ID)
	}
	var ns []changefeed.Notice
	for _, m := range movies {
		ns = append(ns, changefeed.NewNotice(m, ids[m]))
	}
	for _, p := range changefeed.Payloads(ns) {
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, changefeed.Channel, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := noticesSeen(f.api); n < before+float64(len(ns)) {
			return fmt.Errorf("the api handled %v of %d notices", n-before, len(ns))
		}
		return nil
	})
}

// noticesSeen is how many change notices api has handled.
func noticesSeen(api *API) float64 {
	return testutil.ToFloat64(api.m.notices.WithLabelValues("yes")) + testutil.ToFloat64(api.m.notices.WithLabelValues("no"))
}

func mkReview(provider, ext, movie string, minutes int) review.Review {
	rating := 10 + minutes%90
	return review.Review{ID: review.Key(provider, ext), Provider: provider, ExternalID: ext, MovieID: movie,
		Author: "Author " + ext, Rating: &rating, Title: "Title " + ext, Body: "Body of " + ext, Language: "en",
		URL: "https://example.com/" + ext, Version: 1, SourceUpdatedAt: t0.Add(time.Duration(minutes) * time.Minute),
		IngestedAt: t0.Add(time.Hour)}
}

// get performs a request and returns the status, headers and body.
func get(t *testing.T, method, url string, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("answer is not the expected JSON: %v\n%s", err, b)
	}
	return v
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

// startSink runs the real sink binary on the fixture's stack until the
// test ends, and waits until it is ready.
func (f *fixture) startSink(t *testing.T) {
	t.Helper()
	testenv.Service(t, f.st, "sink", "SINK_ADDR", "SINK_LINGER=2ms")
}

// produce writes normalized events for the sink to pick up.
func (f *fixture) produce(t *testing.T, evs ...review.Event) {
	t.Helper()
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: f.st.Brokers, Topic: f.st.Topic(kafkax.TopicNormalized)})
	defer w.Close()
	var msgs []kafka.Message
	for _, ev := range evs {
		b, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte(ev.Review.ID), Value: b, Headers: []kafka.Header{
			{Key: kafkax.HeaderAccepted, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))}}})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

// sseClient reads one event stream.
type sseClient struct {
	res    *http.Response
	events chan sseMessage
	close  func()
}

type sseMessage struct {
	event string
	data  string
	at    time.Time
}

func openStream(t *testing.T, url string) *sseClient { t.Helper(); return openStreamFrom(t, url, "") }

// openStreamFrom opens a stream with X-Forwarded-For: client (none when
// empty). A refused stream's answer is in res; its events channel closes.
// The stream is closed when the test ends, or by close.
func openStreamFrom(t *testing.T, url, client string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if client != "" {
		req.Header.Set("X-Forwarded-For", client)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &sseClient{res: res, events: make(chan sseMessage, 100), close: func() { cancel(); res.Body.Close() }}
	t.Cleanup(c.close)
	if res.StatusCode != http.StatusOK {
		close(c.events) // the answer's body is an error, for the test to read
		return c
	}
	go func() {
		defer close(c.events)
		sc := bufio.NewScanner(res.Body)
		var m sseMessage
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if m.event != "" || m.data != "" {
					m.at = time.Now()
					c.events <- m
				}
				m = sseMessage{}
			case strings.HasPrefix(line, "event: "):
				m.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				m.data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return c
}

func (c *sseClient) next(t *testing.T, within time.Duration) sseMessage {
	t.Helper()
	select {
	case m, ok := <-c.events:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return m
	case <-time.After(within):
		t.Fatalf("no event within %s", within)
	}
	return sseMessage{}
}
