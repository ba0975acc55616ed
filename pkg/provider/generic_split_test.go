package provider_test

import (
	"strings"
	"testing"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// gen is a valid generic event for review id, edited by raw replacements.
func gen(id string, edits ...string) string {
	s := `{"type":"review.upserted","data":{"review_id":"` + id + `","version":2,"updated_at":"2026-11-20T10:00:00Z",` +
		`"movie":{"imdb_id":"tt0111161","title":"The Shawshank Redemption"},"author":"A","title":"T","body":"B",` +
		`"rating":{"value":4,"scale":5},"language":"en","url":"https://example.com/r"}}`
	for i := 0; i+1 < len(edits); i += 2 {
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	return s
}

func TestGenericSplit(t *testing.T) {
	one, two := gen("g-1"), gen("g-2", `"review.upserted"`, `"review.deleted"`)
	many := make([]string, provider.MaxEventsPerDelivery+1)
	for i := range many {
		many[i] = one
	}
	tests := []struct {
		name   string
		body   string
		ids    []string
		reason provider.Reason
	}{
		{"one event", one, []string{"g-1"}, ""},
		{"one event, spaced", " \n" + one + "\n", []string{"g-1"}, ""},
		{"a batch with a delete", `{"events":[` + one + ` ,` + "\n" + two + `]}`, []string{"g-1", "g-2"}, ""},
		{"a batch ignores fields beside events", `{"data":5,"events":[` + one + `]}`, []string{"g-1"}, ""},
		{"at the limit", `{"events":[` + strings.Join(many[:provider.MaxEventsPerDelivery], ",") + `]}`, nil, ""},
		{"over the limit", `{"events":[` + strings.Join(many, ",") + `]}`, nil, provider.ReasonTooManyEvents},
		{"empty batch", `{"events":[]}`, nil, provider.ReasonUnknownShape},
		{"events not an array", `{"events":{}}`, nil, provider.ReasonUnknownShape},
		{"an event not an object", `{"events":[` + one + `,5]}`, nil, provider.ReasonUnknownShape},
		{"array body", `[` + one + `]`, nil, provider.ReasonUnknownShape},
		{"string body", `"review"`, nil, provider.ReasonUnknownShape},
		{"null body", `null`, nil, provider.ReasonUnknownShape},
		{"empty body", ``, nil, provider.ReasonNotJSON},
		{"not JSON", `{"type":`, nil, provider.ReasonNotJSON},
		{"trailing garbage", one + `}`, nil, provider.ReasonNotJSON},
		{"unknown type", gen("g-1", `"review.upserted"`, `"review.liked"`), nil, provider.ReasonUnknownShape},
		{"a field of the wrong type", gen("g-1", `"version":2`, `"version":"2"`), nil, provider.ReasonUnknownShape},
		{"an invalid field", gen("g-1", `"version":2`, `"version":0`), nil, provider.ReasonInvalidField},
		{"one bad event fails the batch", `{"events":[` + one + `,` + gen("g-3", `"version":2`, `"version":0`) + `]}`, nil, provider.ReasonInvalidField},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			changes, err := provider.Generic{}.Split([]byte(tc.body))
			checkSplit(t, provider.Generic{}, changes, err, tc.ids, tc.reason)
		})
	}
	t.Run("payload bytes untouched", func(t *testing.T) {
		changes, err := provider.Generic{}.Split([]byte(`{"events":[ ` + one + ` , ` + two + ` ]}`))
		if err != nil {
			t.Fatal(err)
		}
		if string(changes[0].Payload) != one || string(changes[1].Payload) != two {
			t.Errorf("payloads changed:\n%s\n%s", changes[0].Payload, changes[1].Payload)
		}
	})
	t.Run("the failing event is named", func(t *testing.T) {
		_, err := provider.Generic{}.Split([]byte(`{"events":[` + one + `,` + gen("g-3", `"version":2`, `"version":0`) + `]}`))
		if err == nil || !strings.Contains(err.Error(), "event 1: ") {
			t.Errorf("error %v, want it to name \"event 1: \"", err)
		}
	})
}
