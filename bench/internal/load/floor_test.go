package load

import (
	"context"
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
