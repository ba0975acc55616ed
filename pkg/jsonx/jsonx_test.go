package jsonx_test

import (
	stdjson "encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
)

type event struct {
	Type   string              `json:"type"`
	Data   struct{ ID string } `json:"data"`
	Events []string            `json:"events"`
}

// Refused input answers with encoding/json's error and partial result: the
// types callers classify with errors.As, the same message, and the fields
// encoding/json fills after a type error (it goes on; the fast decoder stops).
func TestRefusedInputIsEncodingJSONs(t *testing.T) {
	for _, in := range []string{
		`{"data":5,"events":["a","b"]}`, // a type error, then more fields
		`{"type":`,                      // syntax
		`{"type":"x"} trailing`,
		`[1,2]`,
		``,
	} {
		var got, want event
		err := jsonx.Unmarshal([]byte(in), &got)
		stdErr := stdjson.Unmarshal([]byte(in), &want)
		if err == nil || stdErr == nil || err.Error() != stdErr.Error() || reflect.TypeOf(err) != reflect.TypeOf(stdErr) {
			t.Errorf("%q: error %T %v, encoding/json gives %T %v", in, err, err, stdErr, stdErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: left %+v, encoding/json leaves %+v", in, got, want)
		}
	}
	var e event
	err := jsonx.Unmarshal([]byte(`{"data":5,"events":["a"]}`), &e)
	var typ *stdjson.UnmarshalTypeError
	if !errors.As(err, &typ) || typ.Field != "data" || len(e.Events) != 1 {
		t.Fatalf("type error %v (field %q), events %v: want encoding/json's, with events decoded", err, typ.Field, e.Events)
	}
}

func TestAcceptedInput(t *testing.T) {
	var e event
	if err := jsonx.Unmarshal([]byte(`{"type":"review.upserted","data":{"ID":"r1"},"events":["a"]}`), &e); err != nil ||
		e.Type != "review.upserted" || e.Data.ID != "r1" || len(e.Events) != 1 {
		t.Fatalf("decoded %+v, %v", e, err)
	}
	b, err := jsonx.Marshal(map[string]any{"b": "<&>", "a": 1})
	if want, _ := stdjson.Marshal(map[string]any{"b": "<&>", "a": 1}); err != nil || string(b) != string(want) {
		t.Fatalf("Marshal wrote %s, encoding/json %s", b, want)
	}
	if !jsonx.Valid([]byte(`{"a":[1,2]}`)) || jsonx.Valid([]byte(`{"a":`)) {
		t.Fatal("Valid disagrees")
	}
}
