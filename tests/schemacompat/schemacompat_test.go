package schemacompat

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "write schemas/baseline/ from schemas/ for every schema without a breaking change")

const (
	schemaDir   = "../../schemas"
	baselineDir = "../../schemas/baseline"
)

// Every published schema is compared with its committed baseline; a
// breaking change fails the test. Additive changes pass and are listed, so
// the baseline can be refreshed (-update) and protect them too.
func TestSchemasCompatibleWithBaseline(t *testing.T) {
	current, err := filepath.Glob(filepath.Join(schemaDir, "*.schema.json"))
	if err != nil || len(current) == 0 {
		t.Fatalf("no schemas in %s: %v", schemaDir, err)
	}
	baselines, _ := filepath.Glob(filepath.Join(baselineDir, "*.schema.json"))
	for _, b := range baselines {
		name := filepath.Base(b)
		if _, err := os.Stat(filepath.Join(schemaDir, name)); err != nil {
			t.Errorf("BREAKING %s: the schema was removed but its baseline exists; a published version stays "+
				"as long as its topic does (schemas/VERSIONING.md)", name)
		}
	}
	for _, path := range current {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			cur, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			basePath := filepath.Join(baselineDir, name)
			base, err := os.ReadFile(basePath)
			if os.IsNotExist(err) {
				if *update {
					write(t, basePath, cur)
					return
				}
				t.Fatalf("%s has no baseline: snapshot it with `cd tests && go test ./schemacompat -update` "+
					"and commit schemas/baseline/%s", name, name)
			}
			if err != nil {
				t.Fatal(err)
			}
			changes, err := Compare(base, cur)
			if err != nil {
				t.Fatal(err)
			}
			breaking := Breaking(changes)
			for _, c := range breaking {
				t.Errorf("%s: %s", name, c)
			}
			if len(breaking) > 0 {
				t.Errorf("%s: a breaking change needs a new version: a new schema file (.v2) and a new topic; "+
					"see schemas/VERSIONING.md. The baseline is never edited to let a breaking change through.", name)
				return
			}
			if len(changes) == 0 {
				return
			}
			if *update {
				write(t, basePath, cur)
				return
			}
			for _, c := range changes {
				t.Logf("%s: %s", name, c)
			}
			t.Logf("%s: compatible changes not yet in the baseline; refresh it with `cd tests && go test ./schemacompat -update`", name)
		})
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

const base = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["op", "review"],
  "additionalProperties": true,
  "properties": {
    "op": {"enum": ["upsert", "delete"]},
    "review": {
      "type": "object",
      "required": ["id", "rating"],
      "properties": {
        "id": {"type": "string", "pattern": "^[a-z]+:.+$"},
        "rating": {"type": ["integer", "null"], "minimum": 0, "maximum": 100},
        "tags": {"type": "array", "items": {"type": "string"}},
        "at": {"type": "string", "format": "date-time"},
        "kind": {"$ref": "#/$defs/kind"}
      }
    },
    "closed": {"type": "object", "additionalProperties": false, "properties": {"a": {"type": "string"}}}
  },
  "$defs": {"kind": {"enum": ["a", "b"]}}
}`

// edit returns base with each old→new replacement applied once.
func edit(t *testing.T, pairs ...string) string {
	t.Helper()
	s := base
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("test edit: %q not in the base schema", pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return s
}

func TestCompare(t *testing.T) {
	cases := []struct {
		name     string
		current  string
		kinds    []Kind // expected kinds, in path order
		breaking bool
		path     string // the first change's path, when set
	}{
		{"identical", base, nil, false, ""},
		{"whitespace, key and required order only", edit(t, "\"type\": \"object\",\n  \"required\": [\"op\", \"review\"],", `"required": ["review",   "op"], "type": "object",`), nil, false, ""},
		{"description edited", edit(t, `"op": {"enum"`, `"op": {"description": "what happens", "enum"`), []Kind{AnnotationChanged}, false, "/properties/op"},
		{"optional property added", edit(t, `"tags": {`, `"lang": {"type": "string"}, "tags": {`), []Kind{PropertyAdded}, false, "/properties/review/properties/lang"},
		{"property removed", edit(t, `"at": {"type": "string", "format": "date-time"},`, ""), []Kind{PropertyRemoved}, true, "/properties/review/properties/at"},
		{"property renamed", edit(t, `"at": {`, `"updated_at": {`), []Kind{PropertyRemoved, PropertyAdded}, true, "/properties/review/properties/at"},
		{"type changed", edit(t, `"id": {"type": "string"`, `"id": {"type": "integer"`), []Kind{TypeChanged}, true, "/properties/review/properties/id"},
		{"type narrowed", edit(t, `"type": ["integer", "null"]`, `"type": "integer"`), []Kind{TypeChanged}, true, ""},
		{"type widened", edit(t, `"type": ["integer", "null"]`, `"type": ["integer", "null", "string"]`), []Kind{TypeChanged}, true, ""},
		{"type union reordered", edit(t, `"type": ["integer", "null"]`, `"type": ["null", "integer"]`), nil, false, ""},
		{"required field added", edit(t, `"required": ["id", "rating"]`, `"required": ["id", "rating", "tags"]`), []Kind{RequiredAdded}, true, "/properties/review/required"},
		{"new property added as required", edit(t, `"required": ["id", "rating"]`, `"required": ["id", "rating", "lang"]`, `"tags": {`, `"lang": {"type": "string"}, "tags": {`), []Kind{PropertyAdded, RequiredAdded}, true, ""},
		{"required dropped", edit(t, `"required": ["id", "rating"]`, `"required": ["id"]`), []Kind{RequiredRemoved}, true, ""},
		{"enum value removed", edit(t, `["upsert", "delete"]`, `["upsert"]`), []Kind{EnumValueRemoved}, true, "/properties/op/enum"},
		{"enum value added", edit(t, `["upsert", "delete"]`, `["upsert", "delete", "merge"]`), []Kind{EnumValueAdded}, false, "/properties/op/enum"},
		{"enum value removed in a $defs entry", edit(t, `"kind": {"enum": ["a", "b"]}`, `"kind": {"enum": ["a"]}`), []Kind{EnumValueRemoved}, true, "/$defs/kind/enum"},
		{"$defs entry removed", edit(t, `"$defs": {"kind": {"enum": ["a", "b"]}}`, `"$defs": {}`), []Kind{DefinitionRemoved}, true, ""},
		{"$ref changed", edit(t, `"$ref": "#/$defs/kind"`, `"$ref": "#/$defs/other"`), []Kind{KeywordChanged}, true, ""},
		{"maximum raised", edit(t, `"maximum": 100`, `"maximum": 1000`), []Kind{KeywordChanged}, true, ""},
		{"pattern added", edit(t, `"tags": {"type": "array", "items": {"type": "string"}}`, `"tags": {"type": "array", "items": {"type": "string", "pattern": "^x"}}`), []Kind{KeywordChanged}, true, "/properties/review/properties/tags/items"},
		{"format removed", edit(t, `"at": {"type": "string", "format": "date-time"}`, `"at": {"type": "string"}`), []Kind{KeywordChanged}, true, ""},
		{"items type changed", edit(t, `"items": {"type": "string"}`, `"items": {"type": "number"}`), []Kind{TypeChanged}, true, "/properties/review/properties/tags/items"},
		{"property added to a closed object", edit(t, `"properties": {"a": {"type": "string"}}`, `"properties": {"a": {"type": "string"}, "b": {"type": "string"}}`), []Kind{PropertyAdded}, true, "/properties/closed/properties/b"},
		{"object opened", edit(t, `"additionalProperties": false`, `"additionalProperties": true`), []Kind{SchemaNotAnObject}, true, "/properties/closed/additionalProperties"},
		{"top-level required field removed with its property", edit(t, `"required": ["op", "review"]`, `"required": ["op"]`, `"closed": {"type": "object", "additionalProperties": false, "properties": {"a": {"type": "string"}}}`, `"x": true`), []Kind{PropertyRemoved, PropertyAdded, RequiredRemoved}, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			changes, err := Compare([]byte(base), []byte(c.current))
			if err != nil {
				t.Fatal(err)
			}
			var kinds []Kind
			for _, ch := range changes {
				kinds = append(kinds, ch.Kind)
			}
			slices.Sort(kinds)
			want := slices.Clone(c.kinds)
			slices.Sort(want)
			if !slices.Equal(kinds, want) {
				t.Fatalf("changes %v, want kinds %v", changes, c.kinds)
			}
			if got := len(Breaking(changes)) > 0; got != c.breaking {
				t.Fatalf("breaking = %v, want %v: %v", got, c.breaking, changes)
			}
			if c.path != "" && changes[0].Path != c.path {
				t.Fatalf("path %q, want %q", changes[0].Path, c.path)
			}
		})
	}
	if _, err := Compare([]byte(base), []byte("{")); err == nil {
		t.Fatal("Compare accepted a schema that is not JSON")
	}
}

// The real schemas compared with themselves show no change, and dropping
// a field from the canonical review is caught: the check can fail.
func TestCheckCatchesARealBreak(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(schemaDir, "review.v1.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cs, _ := Compare(b, b); len(cs) != 0 {
		t.Fatalf("a schema differs from itself: %v", cs)
	}
	broken := strings.Replace(string(b), `"rating"`, `"score"`, -1)
	cs, err := Compare(b, []byte(broken))
	if err != nil {
		t.Fatal(err)
	}
	if len(Breaking(cs)) == 0 {
		t.Fatalf("renaming rating to score is not breaking: %v", cs)
	}
}
