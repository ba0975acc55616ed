// Package schemas embeds reviewpipe's JSON Schemas and validates documents
// against them, so tests hold what the pipeline really produces to the
// published contract. Compiled schemas are cached; safe for concurrent use.
package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed *.schema.json
var files embed.FS

// The schema files, by the record they describe.
const (
	RawEnvelope     = "raw-envelope.v1.schema.json"
	NormalizedEvent = "normalized-event.v1.schema.json"
	Review          = "review.v1.schema.json"
	DeadLetter      = "dead-letter.v1.schema.json"
	SyncRequest     = "sync-request.v1.schema.json"
)

const base = "https://reviewpipe.dev/schemas/"

var (
	once     sync.Once
	compiled map[string]*jsonschema.Schema
	initErr  error
)

func load() {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	entries, err := files.ReadDir(".")
	if err != nil {
		initErr = err
		return
	}
	for _, e := range entries {
		b, _ := files.ReadFile(e.Name())
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			initErr = fmt.Errorf("schema %s: %w", e.Name(), err)
			return
		}
		if err := c.AddResource(base+e.Name(), doc); err != nil {
			initErr = fmt.Errorf("schema %s: %w", e.Name(), err)
			return
		}
	}
	compiled = map[string]*jsonschema.Schema{}
	for _, e := range entries {
		s, err := c.Compile(base + e.Name())
		if err != nil {
			initErr = fmt.Errorf("compile %s: %w", e.Name(), err)
			return
		}
		compiled[e.Name()] = s
	}
}

// Validate checks doc against the named schema (one of the constants) and
// returns an error that says which field is wrong.
func Validate(name string, doc []byte) error {
	once.Do(load)
	if initErr != nil {
		return initErr
	}
	s, ok := compiled[name]
	if !ok {
		return fmt.Errorf("no schema %q", name)
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	return nil
}

// Files returns the embedded schema files' names and contents.
func Files() (map[string][]byte, error) {
	entries, err := files.ReadDir(".")
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, e := range entries {
		b, err := files.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		out[e.Name()] = b
	}
	return out, nil
}
