// Command longfuncs lists the non-test functions longer than a limit (80
// lines by default) whose doc comment does not say why they stay whole. The
// lint script (scripts/lint.sh) runs it over services/ and pkg/ and fails on
// any it prints.
//
// A function is justified by a line of its doc comment that starts with
// "Stays whole:" or contains "stays whole:" and gives the reason, e.g.
//
//	// It stays whole: the steps share one transaction and read in order.
//
// Lines are counted from the func keyword to the closing brace. Files named
// *_test.go and directories named testdata are skipped.
//
//	go run ./tests/cmd/longfuncs [-max 80] dir...
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	limit := flag.Int("max", 80, "the most lines a function may have without a reason")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: longfuncs [-max N] dir...")
		os.Exit(2)
	}
	var found []Func
	for _, dir := range flag.Args() {
		fs, err := Walk(dir, *limit)
		if err != nil {
			fmt.Fprintln(os.Stderr, "longfuncs:", err)
			os.Exit(2)
		}
		found = append(found, fs...)
	}
	if Report(os.Stdout, found, *limit) > 0 {
		os.Exit(1)
	}
}

// Func is one function over the limit with no reason given.
type Func struct {
	Pos   token.Position // where its func keyword is
	Name  string         // Name or Recv.Name
	Lines int
}

// Walk parses every non-test Go file under dir and returns the functions of
// more than limit lines that lack a "stays whole:" reason, in file order.
func Walk(dir string, limit int) ([]Func, error) {
	var out []Func
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "testdata" || (strings.HasPrefix(name, ".") && path != dir) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fs, err := Check(fset, path, src, limit)
		out = append(out, fs...)
		return err
	})
	return out, err
}

// Check returns the functions of one file's source over limit lines that
// lack a reason.
func Check(fset *token.FileSet, path string, src []byte, limit int) ([]Func, error) {
	f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	var out []Func
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Body == nil {
			continue
		}
		start, end := fset.Position(fn.Pos()), fset.Position(fn.End())
		lines := end.Line - start.Line + 1
		if lines <= limit || justified(fn.Doc) {
			continue
		}
		out = append(out, Func{Pos: start, Name: funcName(fn), Lines: lines})
	}
	return out, nil
}

// justified reports whether a doc comment says why its function stays whole.
func justified(doc *ast.CommentGroup) bool {
	if doc == nil {
		return false
	}
	return strings.Contains(strings.ToLower(doc.Text()), "stays whole:")
}

func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	t := fn.Recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
			continue
		case *ast.IndexExpr:
			t = x.X
			continue
		case *ast.IndexListExpr:
			t = x.X
			continue
		case *ast.Ident:
			return x.Name + "." + fn.Name.Name
		}
		return fn.Name.Name
	}
}

// Report writes one line per function, longest first, and a closing line
// when there are any; it returns how many it wrote.
func Report(w io.Writer, fs []Func, limit int) int {
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Lines > fs[j].Lines })
	for _, f := range fs {
		fmt.Fprintf(w, "%s:%d: %s is %d lines\n", f.Pos.Filename, f.Pos.Line, f.Name, f.Lines)
	}
	if len(fs) > 0 {
		fmt.Fprintf(w, "longfuncs: %d functions over %d lines without a \"stays whole:\" reason in their doc comment: split them or say why\n", len(fs), limit)
	}
	return len(fs)
}
