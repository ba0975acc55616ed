// Package jsonx is the JSON codec of the per-review hot path: the
// receiver's split, the processor's decode, normalize and encode, the
// sink's decode, and the api's answers. It is github.com/segmentio/encoding/json, a drop-in
// replacement for encoding/json that decodes and encodes the project's
// records about twice as fast (BenchmarkReceiverPath, BenchmarkProcessorPath,
// BenchmarkDecode), with one rule that keeps encoding/json's behaviour where
// it is visible: a value the fast decoder refuses is decoded again by
// encoding/json, so every error a caller sees, classifies (*json.SyntaxError,
// *json.UnmarshalTypeError) and reports in a dead letter is the standard
// library's, and so is whatever a failed decode leaves filled in.
//
// Accepted input decodes to the same values as with encoding/json, and
// values encode to the same bytes: pkg/provider's FuzzJSONParity checks both
// on every record type of the path.
package jsonx

import (
	stdjson "encoding/json"
	"reflect"

	fastjson "github.com/segmentio/encoding/json"
)

// Unmarshal is encoding/json.Unmarshal, faster on input it accepts. v
// points to a zero value, as everywhere in this project: a refused input is
// decoded again from the zero value.
func Unmarshal(data []byte, v any) error {
	if err := fastjson.Unmarshal(data, v); err != nil {
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
			rv.Elem().SetZero()
		}
		return stdjson.Unmarshal(data, v)
	}
	return nil
}

// Marshal is encoding/json.Marshal, faster.
func Marshal(v any) ([]byte, error) { return fastjson.Marshal(v) }

// AppendUnescaped appends v's encoding and a newline to b, as an
// encoding/json.Encoder with SetEscapeHTML(false) writes it: for answers
// that are not embedded in HTML.
func AppendUnescaped(b []byte, v any) ([]byte, error) {
	b, err := fastjson.Append(b, v, fastjson.SortMapKeys)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Valid is encoding/json.Valid, faster.
func Valid(data []byte) bool { return fastjson.Valid(data) }
