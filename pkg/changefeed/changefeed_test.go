package changefeed

import (
	"fmt"
	"strings"
	"testing"
)

func TestPayloadsPackAndParseBack(t *testing.T) {
	var ns []Notice
	for i := range 400 {
		ns = append(ns, NewNotice(fmt.Sprintf("tt%07d", i), []string{fmt.Sprintf("generic:r-%d", i), "cinescore:c-1"}))
	}
	ps := Payloads(ns)
	if len(ps) < 2 || len(ps) > 4 {
		t.Fatalf("%d payloads for 400 notices, want as few as %d bytes allow", len(ps), MaxPayload)
	}
	var back []Notice
	for _, p := range ps {
		if len(p) > MaxPayload {
			t.Fatalf("a payload of %d bytes", len(p))
		}
		got, err := Parse(p)
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, got...)
	}
	if fmt.Sprint(back) != fmt.Sprint(ns) {
		t.Fatalf("parsed back %d notices, not the %d packed in order", len(back), len(ns))
	}
	if Payloads(nil) != nil {
		t.Fatal("payloads for no notices")
	}
}

func TestNewNoticeCapsItsIDs(t *testing.T) {
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("generic:a-rather-long-review-id-%04d", i)
	}
	n := NewNotice("tt0000001", ids)
	ps := Payloads([]Notice{n})
	if !n.More || len(n.IDs) == 0 || len(n.IDs) == len(ids) || len(ps) != 1 || len(ps[0]) > MaxPayload {
		t.Fatalf("more=%v, %d ids, %d payloads", n.More, len(n.IDs), len(ps))
	}
	if small := NewNotice("tt0000001", ids[:3]); small.More || len(small.IDs) != 3 {
		t.Fatalf("3 ids: %+v", small)
	}
}

func TestParse(t *testing.T) {
	ns, err := Parse(`{"movie_id":"tt0000001","ids":["generic:a"]}`)
	if err != nil || len(ns) != 1 || ns[0].MovieID != "tt0000001" || ns[0].IDs[0] != "generic:a" {
		t.Fatalf("the single-notice form of earlier sinks: %+v, %v", ns, err)
	}
	for _, bad := range []string{``, `[]`, `null`, `[{"ids":["a"]}]`, `[{"movie_id":"x"},{"ids":[]}]`, `{"ids":[]}`, `not json`, `5`} {
		if _, err := Parse(bad); err == nil || !strings.Contains(err.Error(), "not a review change notice") {
			t.Errorf("%q: %v, want an error", bad, err)
		}
	}
}
