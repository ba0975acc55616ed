package load

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The reader process's samples come back as they were taken: one per read,
// with their codes, and its arguments read back as given.
func TestServeReaderSamples(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/movies/"+MovieID(3)+"/reviews" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte(`{"reviews":[]}`))
	}))
	defer srv.Close()
	base, rate, movies, d, err := ParseReaderArgs(ReaderArgs(srv.URL, 200, 5, 500*time.Millisecond))
	if err != nil || base != srv.URL || rate != 200 || movies != 5 || d != 500*time.Millisecond {
		t.Fatalf("args read back: %q %v %d %v %v", base, rate, movies, d, err)
	}
	var out bytes.Buffer
	if err := ServeReader(context.Background(), base, rate, movies, d, &out); err != nil {
		t.Fatal(err)
	}
	samples, err := parseSamples(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 100 {
		t.Fatalf("%d samples, want 100 (200/s for 0.5 s)", len(samples))
	}
	codes := map[int]int{}
	for _, s := range samples {
		codes[s.Code]++
		if s.Latency <= 0 || s.Late < 0 || s.Late > s.Latency {
			t.Fatalf("sample %+v: want 0 <= late <= latency, latency > 0", s)
		}
	}
	if codes[http.StatusOK] != 80 || codes[http.StatusNotFound] != 20 {
		t.Fatalf("codes %v, want 80 200s and 20 404s (one movie in 5 answers 404)", codes)
	}
	if _, _, _, _, err := ParseReaderArgs([]string{"x"}); err == nil {
		t.Fatal("one argument read as four")
	}
}
