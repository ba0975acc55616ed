package provider

import (
	stdjson "encoding/json"
	"fmt"
	"reflect"
	"testing"

	fastjson "github.com/segmentio/encoding/json"
)

// FuzzGenericBodyParity is FuzzJSONParity for the generic delivery's own
// decoding (unexported: an embedded event beside "events", whose items
// decode themselves and keep their bytes): where the fast decoder accepts a
// body, encoding/json decodes it to the same events, item bytes and item
// errors.
//
//	go test ./provider -run '^$' -fuzz FuzzGenericBodyParity -fuzztime 60s
func FuzzGenericBodyParity(f *testing.F) {
	one := `{"type":"review.upserted","data":{"review_id":"r1","version":1,"updated_at":"2026-11-20T10:00:00Z","movie":{"imdb_id":"tt0111161"},"rating":{"value":9,"scale":10}}}`
	for _, s := range []string{one, `{"events":[` + one + `, ` + one + `]}`, `{"events":[` + one + `,5]}`,
		`{"events":[{"type":"review.deleted","data":{"review_id":"r2","version":"2"}}]}`, `{"data":5,"events":[]}`,
		`{"events":null}`, `{"Events":[` + one + `]}`, `{"type":"review.upserted","events":[` + one + `],"data":{}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, std genericBody
		if fastjson.Unmarshal(b, &fast) != nil {
			return // jsonx answers with encoding/json's decode
		}
		if err := stdjson.Unmarshal(b, &std); err != nil {
			t.Fatalf("the fast decoder accepts %q, encoding/json refuses it: %v", b, err)
		}
		if err := sameBody(fast, std); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
	})
}

// sameBody reports the first difference between two decoded bodies.
func sameBody(got, want genericBody) error {
	if !reflect.DeepEqual(got.GenericEvent, want.GenericEvent) {
		return fmt.Errorf("the single event differs: %+v, encoding/json %+v", got.GenericEvent, want.GenericEvent)
	}
	if (got.Events == nil) != (want.Events == nil) {
		return fmt.Errorf("events present %v, encoding/json %v", got.Events != nil, want.Events != nil)
	}
	if got.Events == nil {
		return nil
	}
	g, w := *got.Events, *want.Events
	if len(g) != len(w) {
		return fmt.Errorf("%d events, encoding/json %d", len(g), len(w))
	}
	for i := range g {
		if string(g[i].raw) != string(w[i].raw) || !reflect.DeepEqual(g[i].ev, w[i].ev) || fmt.Sprint(g[i].err) != fmt.Sprint(w[i].err) {
			return fmt.Errorf("event %d: %q %+v %v, encoding/json %q %+v %v", i, g[i].raw, g[i].ev, g[i].err, w[i].raw, w[i].ev, w[i].err)
		}
	}
	return nil
}
