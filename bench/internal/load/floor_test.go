package load

import (
	"context"
	"math"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestMain lets this test binary be the floor's server, as the load
// generator's is (FloorFlag).
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == FloorFlag {
		size, err := strconv.Atoi(os.Args[2])
		if err == nil {
			err = ServeFloor(size)
		}
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// The HTTP floor serves answers of the asked size, is read at the asked
// rate, and reports a CPU time per request from the server process.
func TestHTTPFloor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cpu, reads, err := HTTPFloor(ctx, os.Args[0], 5000, 200, 10, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if reads.Count < 150 || reads.Count > 250 || reads.OK != reads.Count {
		t.Fatalf("%d reads, %d answered 200; want about 200, all 200", reads.Count, reads.OK)
	}
	if cpu <= 0 || cpu > 100_000 {
		t.Fatalf("floor CPU per read %.1f us", cpu)
	}
	t.Logf("floor: %.0f us of CPU per read at 200/s, p99 %.2f ms", cpu, reads.P99)
}

// The floor's server answers the size asked, the api's headers and 200.
func TestServeFloorAnswerSize(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, err := startFloor(ctx, os.Args[0], 4321)
	if err != nil {
		t.Fatal(err)
	}
	defer f.stop()
	n, err := answerSize(ctx, "http://"+f.addr+"/v1/movies/tt0000001/reviews")
	if err != nil || n != 4321 {
		t.Fatalf("answer of %d bytes, %v; want 4321", n, err)
	}
}

func TestParsePageLookups(t *testing.T) {
	text := `# HELP reviewpipe_api_cache_lookups_total ...
reviewpipe_api_cache_lookups_total{kind="page",result="hit"} 1500
reviewpipe_api_cache_lookups_total{kind="page",result="miss"} 25
reviewpipe_api_cache_lookups_total{kind="review",result="hit"} 7
`
	got := parsePageLookups(text)
	if got["hit"] != 1500 || got["miss"] != 25 || len(got) != 2 {
		t.Fatalf("parsed %v", got)
	}
	if parsePageLookups("go_goroutines 12\n") != nil {
		t.Fatal("an api without the cache's counters parsed as having them")
	}
}

func TestPageLatencyBound(t *testing.T) {
	text := func(counts ...int) string {
		les := []string{"0.0005", "0.001", "0.0025", "0.005", "+Inf"}
		out := "# TYPE reviewpipe_api_request_duration_seconds histogram\n"
		for i, le := range les {
			out += pageRoute + le + `"} ` + strconv.Itoa(counts[i]) + "\n"
		}
		// Another route's buckets must not count.
		return out + `reviewpipe_api_request_duration_seconds_bucket{code="200",route="GET /v1/movies",le="+Inf"} 999` + "\n"
	}
	before := parsePageLatency(text(10, 20, 30, 40, 40))
	if len(before) != 5 || before[math.Inf(1)] != 40 {
		t.Fatalf("parsed %v", before)
	}
	// 1,000 reads between: 900 within 0.5 ms, 985 within 1 ms, 995 within
	// 2.5 ms, all within 5 ms: p99 is within 2.5 ms.
	after := parsePageLatency(text(910, 1005, 1025, 1040, 1040))
	if le, ok := quantileBound(before, after, 0.99); !ok || le != 0.0025 {
		t.Fatalf("p99 within %v (%v), want 0.0025", le, ok)
	}
	if le, ok := quantileBound(before, after, 0.9); !ok || le != 0.0005 {
		t.Fatalf("p90 within %v (%v), want 0.0005", le, ok)
	}
	// Past the last finite bound: not known.
	slow := parsePageLatency(text(10, 20, 30, 40, 1040))
	if _, ok := quantileBound(before, slow, 0.99); ok {
		t.Fatal("a p99 past every finite bucket was given a bound")
	}
	if _, ok := quantileBound(before, before, 0.99); ok {
		t.Fatal("a bound with no reads between")
	}
}

func TestLateP99(t *testing.T) {
	var samples []Sample
	for i := range 200 {
		samples = append(samples, Sample{Late: time.Duration(i) * time.Millisecond})
	}
	// Quantile's rank: the 198th of 200, as Summarize takes the reads' p99.
	if got := lateP99(samples); got != 197 {
		t.Fatalf("p99 of 0..199 ms: %v, want 197", got)
	}
	if lateP99(nil) != 0 {
		t.Fatal("no samples: want 0")
	}
}
