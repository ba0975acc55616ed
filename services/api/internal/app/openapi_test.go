package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/schemas"
	"github.com/reviewpipe/reviewpipe/services/api/internal/store"
)

const openapiPath = "../../../../schemas/openapi.yaml"

type openapiDoc struct {
	raw   map[string]any
	ops   map[string][]string // "GET /path" -> statuses
	valid *jsonschema.Compiler
}

func loadOpenAPI(t *testing.T) *openapiDoc {
	t.Helper()
	b, err := os.ReadFile(openapiPath)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if raw["openapi"] != "3.1.0" {
		t.Fatalf("openapi.yaml: version %v, want 3.1.0", raw["openapi"])
	}
	d := &openapiDoc{raw: raw, ops: map[string][]string{}}
	for path, item := range raw["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			var codes []string
			for code := range op.(map[string]any)["responses"].(map[string]any) {
				codes = append(codes, code)
			}
			sort.Strings(codes)
			d.ops[strings.ToUpper(method)+" "+path] = codes
		}
	}
	// The document as a JSON Schema resource, with the canonical review's
	// schema beside it, so response bodies are validated against it.
	js, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	d.valid = jsonschema.NewCompiler()
	d.valid.DefaultDraft(jsonschema.Draft2020)
	if err := d.valid.AddResource("https://reviewpipe.dev/openapi.json", doc); err != nil {
		t.Fatal(err)
	}
	files, err := schemas.Files()
	if err != nil {
		t.Fatal(err)
	}
	rb, err := jsonschema.UnmarshalJSON(bytes.NewReader(files[schemas.Review]))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.valid.AddResource("https://reviewpipe.dev/schemas/"+schemas.Review, rb); err != nil {
		t.Fatal(err)
	}
	return d
}

func pointer(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		p = strings.ReplaceAll(strings.ReplaceAll(p, "~", "~0"), "/", "~1")
		p = strings.NewReplacer("{", "%7B", "}", "%7D").Replace(p)
		b.WriteString("/" + p)
	}
	return b.String()
}

// schemaFor compiles the documented schema of op's answer with code and
// content type, or returns nil when the document gives none.
func (d *openapiDoc) schemaFor(t *testing.T, op, code, contentType string) *jsonschema.Schema {
	t.Helper()
	method, path, _ := strings.Cut(op, " ")
	resp := d.raw["paths"].(map[string]any)[path].(map[string]any)[strings.ToLower(method)].(map[string]any)["responses"].(map[string]any)[code].(map[string]any)
	loc := pointer("paths", path, strings.ToLower(method), "responses", code)
	if ref, ok := resp["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/responses/")
		resp = d.raw["components"].(map[string]any)["responses"].(map[string]any)[name].(map[string]any)
		loc = pointer("components", "responses", name)
	}
	content, _ := resp["content"].(map[string]any)
	if content == nil {
		return nil
	}
	if _, ok := content[contentType]; !ok {
		t.Fatalf("%s %s: content type %s is not documented (documented: %v)", op, code, contentType, keys(content))
	}
	s, err := d.valid.Compile("https://reviewpipe.dev/openapi.json#" + loc + pointer("content", contentType, "schema"))
	if err != nil {
		t.Fatalf("%s %s: compile schema: %v", op, code, err)
	}
	return s
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// docPath turns a ServeMux pattern into the document's path.
func docPath(pattern string) string { return strings.TrimSuffix(pattern, "{$}") }

// The handlers keep to schemas/openapi.yaml: every route the API serves is
// documented and every documented operation is served; every documented
// status of every operation is produced by a request below, no other
// status is, and every JSON body matches its documented schema.
func TestHandlersKeepToOpenAPI(t *testing.T) {
	d := loadOpenAPI(t)
	f := newFixture(t, Config{RefreshRate: 0.001, RefreshBurst: 1})
	r := mkReview("generic", "doc1", "tt0111161", 1)
	f.insert(t, r)

	// Routes served, as the command mounts them.
	served := []string{"GET /healthz", "GET /readyz", "GET /metrics"}
	for _, p := range f.api.Patterns() {
		served = append(served, docPath(p))
	}
	var documented []string
	for op := range d.ops {
		documented = append(documented, op)
	}
	slices.Sort(served)
	slices.Sort(documented)
	if !slices.Equal(served, documented) {
		t.Fatalf("routes served %v\ndocumented     %v", served, documented)
	}

	// A server whose PostgreSQL is down and one whose Kafka is down.
	deadPG, err := pgxpool.New(context.Background(), "postgres://nobody@"+testenv.FreeAddr(t)+"/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deadPG.Close)
	deadKafka := kafkax.NewWriter(kafkax.WriterConfig{Brokers: []string{testenv.FreeAddr(t)}, Topic: "x", MaxAttempts: 1, WriteTimeout: time.Second})
	t.Cleanup(func() { deadKafka.Close() })
	cfg := Config{Brokers: []string{testenv.FreeAddr(t)}}
	_, pgDown := serve(t, cfg, store.New(deadPG), deadKafka, "postgres://nobody@"+testenv.FreeAddr(t)+"/none?connect_timeout=1", cfg.Brokers)
	_, kafkaDown := serve(t, Config{Brokers: f.st.Brokers, Names: f.st.Names}, store.New(f.st.DB), deadKafka, f.st.DatabaseURL, f.st.Brokers)

	// A server behind an operator token, and one with room for two event
	// streams, one per client (clients told apart by X-Forwarded-For from
	// the trusted 127.0.0.1).
	_, locked := serve(t, Config{Brokers: f.st.Brokers, Names: f.st.Names, OpsToken: "t0ken"}, store.New(f.st.DB), deadKafka, f.st.DatabaseURL, f.st.Brokers)
	_, capped := serve(t, Config{Brokers: f.st.Brokers, Names: f.st.Names, SSEMaxPerClient: 1, SSEMax: 2, TrustedProxies: []string{"127.0.0.1"}},
		store.New(f.st.DB), deadKafka, f.st.DatabaseURL, f.st.Brokers)
	for _, client := range []string{"192.0.2.1", "192.0.2.2"} {
		if s := openStreamFrom(t, capped.URL+"/v1/movies/tt0111161/events", client); s.res.StatusCode != http.StatusOK {
			t.Fatalf("stream of %s: %d", client, s.res.StatusCode)
		}
	}
	xff := func(client string) map[string]string { return map[string]string{"X-Forwarded-For": client} }

	etag := func(path string) map[string]string {
		_, h, _ := get(t, "GET", f.url+path, nil)
		return map[string]string{"If-None-Match": h.Get("ETag")}
	}
	type call struct {
		op, code string
		base     string
		method   string
		path     string
		header   map[string]string
	}
	calls := []call{
		{"GET /v1/movies/{movie_id}/reviews", "200", f.url, "GET", "/v1/movies/tt0111161/reviews", nil},
		{"GET /v1/movies/{movie_id}/reviews", "304", f.url, "GET", "/v1/movies/tt0111161/reviews", etag("/v1/movies/tt0111161/reviews")},
		{"GET /v1/movies/{movie_id}/reviews", "400", f.url, "GET", "/v1/movies/bad/reviews", nil},
		{"GET /v1/movies/{movie_id}/reviews", "503", pgDown.URL, "GET", "/v1/movies/tt0111161/reviews", nil},
		{"GET /v1/reviews/{id}", "200", f.url, "GET", "/v1/reviews/" + r.ID, nil},
		{"GET /v1/reviews/{id}", "304", f.url, "GET", "/v1/reviews/" + r.ID, etag("/v1/reviews/" + r.ID)},
		{"GET /v1/reviews/{id}", "404", f.url, "GET", "/v1/reviews/generic:none", nil},
		{"GET /v1/reviews/{id}", "503", pgDown.URL, "GET", "/v1/reviews/" + r.ID, nil},
		{"POST /v1/movies/{movie_id}/refresh", "202", f.url, "POST", "/v1/movies/tt0111161/refresh", nil},
		{"POST /v1/movies/{movie_id}/refresh", "429", f.url, "POST", "/v1/movies/tt0111161/refresh", nil},
		{"POST /v1/movies/{movie_id}/refresh", "400", f.url, "POST", "/v1/movies/x/refresh", nil},
		{"POST /v1/movies/{movie_id}/refresh", "503", kafkaDown.URL, "POST", "/v1/movies/tt0068646/refresh", nil},
		{"GET /v1/movies/{movie_id}/events", "400", f.url, "GET", "/v1/movies/x/events", nil},
		{"GET /v1/movies/{movie_id}/events", "429", capped.URL, "GET", "/v1/movies/tt0111161/events", xff("192.0.2.1")},
		{"GET /v1/movies/{movie_id}/events", "503", capped.URL, "GET", "/v1/movies/tt0111161/events", xff("192.0.2.3")},
		{"GET /v1/movies", "200", f.url, "GET", "/v1/movies", nil},
		{"GET /v1/movies", "304", f.url, "GET", "/v1/movies", etag("/v1/movies")},
		{"GET /v1/movies", "400", f.url, "GET", "/v1/movies?limit=0", nil},
		{"GET /v1/movies", "503", pgDown.URL, "GET", "/v1/movies", nil},
		{"GET /v1/ops/providers", "200", f.url, "GET", "/v1/ops/providers", nil},
		{"GET /v1/ops/providers", "503", pgDown.URL, "GET", "/v1/ops/providers", nil},
		{"GET /v1/ops/providers", "401", locked.URL, "GET", "/v1/ops/providers", nil},
		{"GET /", "200", f.url, "GET", "/", nil},
		{"GET /", "304", f.url, "GET", "/", etag("/")},
		{"GET /healthz", "200", f.url, "GET", "/healthz", nil},
		{"GET /readyz", "200", f.url, "GET", "/readyz", nil},
		{"GET /readyz", "503", pgDown.URL, "GET", "/readyz", nil},
		{"GET /metrics", "200", f.url, "GET", "/metrics", nil},
		{"GET /metrics", "401", locked.URL, "GET", "/metrics", map[string]string{"Authorization": "Bearer wrong"}},
	}
	covered := map[string]bool{}
	// The operator view changes every second (generated_at, freshness):
	// a revalidation within the same second is answered 304.
	testenv.Eventually(t, 10*time.Second, func() error {
		if code, _, _ := get(t, "GET", f.url+"/v1/ops/providers", etag("/v1/ops/providers")); code != http.StatusNotModified {
			return fmt.Errorf("operator view revalidated: %d, want 304", code)
		}
		covered["GET /v1/ops/providers 304"] = true
		return nil
	})
	for _, c := range calls {
		t.Run(c.op+" "+c.code, func(t *testing.T) {
			code, h, b := get(t, c.method, c.base+c.path, c.header)
			if fmt.Sprint(code) != c.code {
				t.Fatalf("%s %s answered %d, want %s: %s", c.method, c.path, code, c.code, b)
			}
			if !slices.Contains(d.ops[c.op], c.code) {
				t.Fatalf("%s answers %s, which the document does not list (%v)", c.op, c.code, d.ops[c.op])
			}
			covered[c.op+" "+c.code] = true
			if code == http.StatusNotModified {
				return
			}
			ct, _, _ := strings.Cut(h.Get("Content-Type"), ";")
			s := d.schemaFor(t, c.op, c.code, ct)
			if s == nil || ct != "application/json" {
				return
			}
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if err := s.Validate(v); err != nil {
				t.Fatalf("body does not match the document: %v\n%s", err, b)
			}
		})
	}
	// The event stream's 200, checked by its content type (a stream never ends).
	s := openStream(t, f.url+"/v1/movies/tt0111161/events")
	if s.res.StatusCode != 200 || s.res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", s.res.StatusCode, s.res.Header.Get("Content-Type"))
	}
	d.schemaFor(t, "GET /v1/movies/{movie_id}/events", "200", "text/event-stream")
	covered["GET /v1/movies/{movie_id}/events 200"] = true
	for op, codes := range d.ops {
		for _, code := range codes {
			if !covered[op+" "+code] {
				t.Errorf("%s %s is documented but no request here produces it", op, code)
			}
		}
	}
}
