package tests

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// contractSource is the outside contract, beside the repository (as in CI).
const contractSource = "../../shared/CONTRACT.md"

// contractSections returns a contract's text from its first numbered
// section on: the part docs/contract.md copies word for word.
func contractSections(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## 1. ")
	if i < 0 {
		t.Fatalf("%s has no section 1", path)
	}
	return s[i+1:]
}

// docs/contract.md is the repository's copy of the outside contract, cited
// by comments and docs as "docs/contract.md §n": its sections must be the
// source's, word for word, with the same numbers.
func TestContractDocIsTheSourcesSections(t *testing.T) {
	if _, err := os.Stat(contractSource); err != nil {
		t.Skipf("the source %s is not beside the repository here: %v", contractSource, err)
	}
	copied, source := contractSections(t, "../docs/contract.md"), contractSections(t, contractSource)
	if copied == source {
		return
	}
	cl, sl := strings.Split(copied, "\n"), strings.Split(source, "\n")
	for i := 0; i < len(cl) || i < len(sl); i++ {
		var c, s string
		if i < len(cl) {
			c = cl[i]
		}
		if i < len(sl) {
			s = sl[i]
		}
		if c != s {
			t.Fatalf("docs/contract.md differs from %s from its section line %d:\n copy:   %q\n source: %q\nbring the copy back in line with the source", contractSource, i+1, c, s)
		}
	}
}

// citeExempt are directories whose comments may still cite the outside
// file while their owners move them; none today.
var citeExempt []string

// Comments and docs cite the repository's own docs: a section of the
// contract as "docs/contract.md §n", never the file outside the repository
// (its path may be named as the source, as ../shared/CONTRACT.md).
func TestCitationsStayInTheRepository(t *testing.T) {
	b, err := os.ReadFile("../docs/contract.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\d+)\. `).FindAllStringSubmatch(string(b), -1) {
		sections[m[1]] = true
	}
	cite := regexp.MustCompile(`contract\.md §(\d+)`)
	outside := regexp.MustCompile(`CONTRACT`)
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", path)
		if d.IsDir() {
			switch {
			case rel != "." && strings.HasPrefix(d.Name(), "."), rel == "bin", d.Name() == "node_modules", d.Name() == "artifacts":
				return filepath.SkipDir
			}
			for _, dir := range citeExempt {
				if rel == dir {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if rel == filepath.Join("tests", "contract_doc_test.go") {
			return nil // this test names what it looks for
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".sh", ".yml", ".yaml", ".sql":
		default:
			if d.Name() != "Makefile" {
				return nil
			}
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for n, line := range strings.Split(string(text), "\n") {
			if outside.MatchString(strings.ReplaceAll(line, "shared/CONTRACT.md", "")) {
				t.Errorf("%s:%d cites the contract outside the repository; cite docs/contract.md §n: %s", rel, n+1, strings.TrimSpace(line))
			}
			for _, m := range cite.FindAllStringSubmatch(line, -1) {
				if !sections[m[1]] {
					t.Errorf("%s:%d cites docs/contract.md §%s, which has no such section", rel, n+1, m[1])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
