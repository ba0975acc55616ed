// Package schemacompat compares a JSON Schema with its committed baseline
// and lists the differences, each marked breaking or not for the consumers
// of the records it describes.
//
// The rule (schemas/VERSIONING.md): within a version, a schema may only
// grow in ways that every existing consumer and every record already in a
// topic survive. Records stay in Kafka for weeks (reviews.raw.v1 forever)
// and consumers are deployed on their own schedule, so a change must keep
// old records valid under the new schema and new records readable by old
// consumers. Allowed: adding an optional property (consumers ignore unknown
// fields) unless the object forbids additional properties; adding an enum
// value (consumers skip values they do not know; see VERSIONING.md);
// editing annotations (title, description, examples, default, $comment,
// deprecated). Everything else at an existing location is breaking: a
// property removed or renamed, a type changed, a property made required or
// no longer required, an enum value removed, a $ref or const changed, a
// validation keyword (pattern, format, bounds, lengths, ...) added, removed
// or changed.
//
// It reads JSON only and does no I/O; safe for concurrent use.
package schemacompat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// Kind classifies a difference.
type Kind string

// The kinds of difference.
const (
	PropertyRemoved    Kind = "property-removed"
	PropertyAdded      Kind = "property-added"
	TypeChanged        Kind = "type-changed"
	RequiredAdded      Kind = "required-added"
	RequiredRemoved    Kind = "required-removed"
	EnumValueRemoved   Kind = "enum-value-removed"
	EnumValueAdded     Kind = "enum-value-added"
	DefinitionRemoved  Kind = "definition-removed"
	DefinitionAdded    Kind = "definition-added"
	ItemsChanged       Kind = "items-changed"
	KeywordChanged     Kind = "keyword-changed"
	AnnotationChanged  Kind = "annotation-changed"
	SchemaRemoved      Kind = "schema-removed"
	SchemaNotAnObject  Kind = "schema-not-an-object"
	CompositionChanged Kind = "composition-changed"
)

// Change is one difference between a baseline and the current schema.
type Change struct {
	// Path locates the difference as a JSON pointer into the baseline
	// ("/properties/review/properties/rating").
	Path string
	Kind Kind
	// Breaking is true when an existing consumer or an existing record
	// would not survive the change.
	Breaking bool
	// Detail says what changed, in words.
	Detail string
}

func (c Change) String() string {
	b := "compatible"
	if c.Breaking {
		b = "BREAKING"
	}
	path := c.Path
	if path == "" {
		path = "/"
	}
	return fmt.Sprintf("%s %s at %s: %s", b, c.Kind, path, c.Detail)
}

// Breaking returns the breaking changes of cs.
func Breaking(cs []Change) []Change {
	var out []Change
	for _, c := range cs {
		if c.Breaking {
			out = append(out, c)
		}
	}
	return out
}

// annotations never affect validation or what a consumer reads.
var annotations = map[string]bool{
	"title": true, "description": true, "examples": true, "default": true, "$comment": true,
	"deprecated": true, "readOnly": true, "writeOnly": true, "$schema": true,
}

// handled are the keywords compared structurally; any other keyword is
// compared by value.
var handled = map[string]bool{
	"type": true, "properties": true, "required": true, "enum": true, "items": true, "prefixItems": true,
	"$defs": true, "definitions": true, "additionalProperties": true, "allOf": true, "anyOf": true, "oneOf": true,
	"not": true, "if": true, "then": true, "else": true, "patternProperties": true,
}

// Compare lists the differences from baseline to current, both JSON
// Schema documents, sorted by path. It fails only when either is not JSON.
func Compare(baseline, current []byte) ([]Change, error) {
	old, err := decode(baseline)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	cur, err := decode(current)
	if err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	var c comparer
	c.schema("", old, cur)
	sort.SliceStable(c.out, func(i, j int) bool { return c.out[i].Path < c.out[j].Path })
	return c.out, nil
}

func decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	return v, nil
}

type comparer struct{ out []Change }

func (c *comparer) add(path string, kind Kind, breaking bool, format string, args ...any) {
	c.out = append(c.out, Change{Path: path, Kind: kind, Breaking: breaking, Detail: fmt.Sprintf(format, args...)})
}

// schema compares two subschemas at path. Either may be a boolean schema.
func (c *comparer) schema(path string, oldV, curV any) {
	old, okOld := oldV.(map[string]any)
	cur, okCur := curV.(map[string]any)
	if !okOld || !okCur {
		if !reflect.DeepEqual(oldV, curV) {
			c.add(path, SchemaNotAnObject, true, "schema changed from %s to %s", show(oldV), show(curV))
		}
		return
	}

	c.types(path, old, cur)
	c.properties(path, old, cur)
	c.required(path, old, cur)
	c.enum(path, old, cur)
	c.items(path, old, cur)
	for _, k := range []string{"$defs", "definitions", "patternProperties"} {
		c.definitions(path+"/"+k, k, asMap(old[k]), asMap(cur[k]))
	}
	for _, k := range []string{"additionalProperties", "not", "if", "then", "else"} {
		c.optionalSchema(path+"/"+k, k, old, cur)
	}
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		c.composition(path+"/"+k, k, old, cur)
	}
	for _, k := range keys(old, cur) {
		if handled[k] {
			continue
		}
		ov, inOld := old[k]
		cv, inCur := cur[k]
		if reflect.DeepEqual(ov, cv) {
			continue
		}
		if annotations[k] {
			c.add(path, AnnotationChanged, false, "%s changed", k)
			continue
		}
		switch {
		case !inOld:
			c.add(path, KeywordChanged, true, "%s %s added: records already written may not satisfy it", k, show(cv))
		case !inCur:
			c.add(path, KeywordChanged, true, "%s %s removed: consumers may rely on it", k, show(ov))
		default:
			c.add(path, KeywordChanged, true, "%s changed from %s to %s", k, show(ov), show(cv))
		}
	}
}

func (c *comparer) types(path string, old, cur map[string]any) {
	ot, ct := typeSet(old["type"]), typeSet(cur["type"])
	if slices.Equal(ot, ct) {
		return
	}
	describe := func(s []string) string {
		if s == nil {
			return "any type"
		}
		return strings.Join(s, " or ")
	}
	c.add(path, TypeChanged, true, "type changed from %s to %s", describe(ot), describe(ct))
}

func typeSet(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, x := range t {
			out = append(out, fmt.Sprint(x))
		}
		sort.Strings(out)
		return out
	}
	return nil
}

func (c *comparer) properties(path string, old, cur map[string]any) {
	op, cp := asMap(old["properties"]), asMap(cur["properties"])
	var removed, added []string
	for name := range op {
		if _, ok := cp[name]; !ok {
			removed = append(removed, name)
		}
	}
	for name := range cp {
		if _, ok := op[name]; !ok {
			added = append(added, name)
		}
	}
	sort.Strings(removed)
	sort.Strings(added)
	for _, name := range removed {
		hint := ""
		if len(added) > 0 {
			hint = fmt.Sprintf(" (renamed to %s?)", strings.Join(added, " or "))
		}
		c.add(path+"/properties/"+escape(name), PropertyRemoved, true,
			"property %q removed%s: consumers reading it break", name, hint)
	}
	closed := old["additionalProperties"] == false
	for _, name := range added {
		if closed {
			c.add(path+"/properties/"+escape(name), PropertyAdded, true,
				"property %q added to an object with additionalProperties false: old validators reject new records", name)
		} else {
			c.add(path+"/properties/"+escape(name), PropertyAdded, false, "property %q added", name)
		}
	}
	for _, name := range sortedKeys(op) {
		if cv, ok := cp[name]; ok {
			c.schema(path+"/properties/"+escape(name), op[name], cv)
		}
	}
}

func (c *comparer) required(path string, old, cur map[string]any) {
	or, cr := stringSet(old["required"]), stringSet(cur["required"])
	for _, name := range cr {
		if !slices.Contains(or, name) {
			c.add(path+"/required", RequiredAdded, true,
				"%q became required: records already in the topic may lack it", name)
		}
	}
	cp := asMap(cur["properties"])
	for _, name := range or {
		if slices.Contains(cr, name) {
			continue
		}
		if _, still := cp[name]; !still && asMap(old["properties"])[name] != nil {
			continue // reported as removed
		}
		c.add(path+"/required", RequiredRemoved, true,
			"%q is no longer required: consumers relying on it break", name)
	}
}

func (c *comparer) enum(path string, old, cur map[string]any) {
	oe, okOld := old["enum"].([]any)
	ce, okCur := cur["enum"].([]any)
	switch {
	case !okOld && !okCur:
		return
	case !okOld:
		c.add(path+"/enum", KeywordChanged, true, "enum %s added: records already written may not satisfy it", show(ce))
		return
	case !okCur:
		c.add(path+"/enum", KeywordChanged, true, "enum %s removed: consumers may meet any value", show(oe))
		return
	}
	has := func(list []any, v any) bool {
		for _, x := range list {
			if reflect.DeepEqual(x, v) {
				return true
			}
		}
		return false
	}
	for _, v := range oe {
		if !has(ce, v) {
			c.add(path+"/enum", EnumValueRemoved, true, "enum value %s removed: records already in the topic carry it", show(v))
		}
	}
	for _, v := range ce {
		if !has(oe, v) {
			c.add(path+"/enum", EnumValueAdded, false,
				"enum value %s added: consumers must skip values they do not know (VERSIONING.md)", show(v))
		}
	}
}

func (c *comparer) items(path string, old, cur map[string]any) {
	for _, k := range []string{"items", "prefixItems"} {
		ov, inOld := old[k]
		cv, inCur := cur[k]
		switch {
		case !inOld && !inCur:
		case inOld != inCur:
			c.add(path+"/"+k, ItemsChanged, true, "%s %s", k, map[bool]string{true: "removed", false: "added"}[inOld])
		default:
			ol, oIsList := ov.([]any)
			cl, cIsList := cv.([]any)
			if oIsList || cIsList {
				if !oIsList || !cIsList || len(ol) != len(cl) {
					c.add(path+"/"+k, ItemsChanged, true, "%s changed shape", k)
					continue
				}
				for i := range ol {
					c.schema(fmt.Sprintf("%s/%s/%d", path, k, i), ol[i], cl[i])
				}
				continue
			}
			c.schema(path+"/"+k, ov, cv)
		}
	}
}

func (c *comparer) definitions(path, k string, old, cur map[string]any) {
	for _, name := range sortedKeys(old) {
		cv, ok := cur[name]
		if !ok {
			c.add(path+"/"+escape(name), DefinitionRemoved, true, "%s entry %q removed", k, name)
			continue
		}
		c.schema(path+"/"+escape(name), old[name], cv)
	}
	for _, name := range sortedKeys(cur) {
		if _, ok := old[name]; !ok {
			c.add(path+"/"+escape(name), DefinitionAdded, k == "patternProperties", "%s entry %q added", k, name)
		}
	}
}

func (c *comparer) optionalSchema(path, k string, old, cur map[string]any) {
	ov, inOld := old[k]
	cv, inCur := cur[k]
	switch {
	case !inOld && !inCur:
	case !inOld || !inCur:
		c.add(path, KeywordChanged, true, "%s %s", k, map[bool]string{true: "removed", false: "added"}[inOld])
	default:
		c.schema(path, ov, cv)
	}
}

func (c *comparer) composition(path, k string, old, cur map[string]any) {
	ov, inOld := old[k].([]any)
	cv, inCur := cur[k].([]any)
	switch {
	case !inOld && !inCur:
	case !inOld || !inCur || len(ov) != len(cv):
		c.add(path, CompositionChanged, true, "%s changed from %d to %d subschemas", k, len(ov), len(cv))
	default:
		for i := range ov {
			c.schema(fmt.Sprintf("%s/%d", path, i), ov[i], cv[i])
		}
	}
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func stringSet(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func keys(a, b map[string]any) []string {
	set := map[string]bool{}
	for k := range a {
		set[k] = true
	}
	for k := range b {
		set[k] = true
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// escape makes a JSON pointer token of a property name.
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 80 {
		return string(b[:77]) + "..."
	}
	return string(b)
}
