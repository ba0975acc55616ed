package main

import (
	"bytes"
	"fmt"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fn returns a function declaration of exactly lines lines (func keyword to
// closing brace), after doc.
func fn(doc, head string, lines int) string {
	var b strings.Builder
	b.WriteString(doc)
	b.WriteString(head + " {\n")
	for i := 0; i < lines-2; i++ {
		fmt.Fprintf(&b, "\t_ = %d\n", i)
	}
	b.WriteString("}\n\n")
	return b.String()
}

func TestCheck(t *testing.T) {
	src := "package p\n\ntype T struct{}\ntype G[K any] struct{}\n\n" +
		fn("", "func atLimit()", 80) +
		fn("// overLimit does a lot.\n", "func overLimit()", 81) +
		fn("// whole does a lot.\n//\n// It stays whole: one transaction, read in order.\n", "func whole()", 200) +
		fn("// Stays whole: a table.\n", "func capital()", 81) +
		fn("// notAReason mentions that it stays whole without a colon.\n", "func notAReason()", 81) +
		fn("", "func (t *T) method()", 90) +
		fn("", "func (g G[K]) generic()", 81) +
		"func declared()\n"
	got, err := Check(token.NewFileSet(), "p.go", []byte(src), 80)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range got {
		names = append(names, fmt.Sprintf("%s=%d", f.Name, f.Lines))
	}
	want := "overLimit=81 notAReason=81 T.method=90 G.generic=81"
	if strings.Join(names, " ") != want {
		t.Errorf("flagged %v, want %s", names, want)
	}
}

func TestWalkSkipsTestsAndTestdata(t *testing.T) {
	dir := t.TempDir()
	long := "package p\n\n" + fn("", "func long()", 100)
	for _, f := range []string{"a_test.go", "testdata/b.go", "sub/c.go", "notgo.txt"} {
		path := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(long), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Walk(dir, 80)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || filepath.Base(got[0].Pos.Filename) != "c.go" || got[0].Lines != 100 {
		t.Fatalf("Walk = %+v, want only sub/c.go's long of 100 lines", got)
	}
	var out bytes.Buffer
	if n := Report(&out, got, 80); n != 1 || !strings.Contains(out.String(), "c.go:3: long is 100 lines") {
		t.Errorf("Report wrote %d lines:\n%s", n, out.String())
	}
}

func TestWalkReportsUnparsableFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.go"), []byte("package p\nfunc {"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Walk(dir, 80); err == nil {
		t.Error("Walk of a file that does not parse returned no error")
	}
}
