package review

import (
	"fmt"
	"regexp"
	"testing"

	"golang.org/x/text/language"
)

var imdbRe = regexp.MustCompile(`^tt[0-9]{7,10}$`)

func TestValidMovieIDIsTheRegexp(t *testing.T) {
	for _, id := range []string{"", "tt", "tt123456", "tt1234567", "tt0111161", "tt1234567890", "tt12345678901",
		"TT1234567", "tt123456a", "xtt1234567", "tt1234567\n", "tt١٢٣٤٥٦٧", "nm0000001", "tt-1234567"} {
		if got, want := ValidMovieID(id), imdbRe.MatchString(id); got != want {
			t.Errorf("ValidMovieID(%q) = %v, the regexp says %v", id, got, want)
		}
	}
}

func FuzzValidMovieID(f *testing.F) {
	f.Add("tt0111161")
	f.Add("tt12345678901")
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := ValidMovieID(id), imdbRe.MatchString(id); got != want {
			t.Fatalf("ValidMovieID(%q) = %v, the regexp says %v", id, got, want)
		}
	})
}

func TestLanguageTagRemembersWithinItsCap(t *testing.T) {
	for range 2 { // the second round answers from memory
		for _, s := range []string{"en", "en-us", "EN-gb", "pt-BR", "zh-Hant-TW"} {
			got, err := LanguageTag(s)
			want, _ := language.Parse(s)
			if err != nil || got != want.String() {
				t.Fatalf("LanguageTag(%q) = %q, %v; want %q", s, got, err, want)
			}
		}
		if _, err := LanguageTag("not a tag!"); err == nil {
			t.Fatal("an invalid tag was accepted")
		}
	}
	for i := range maxKnownTags + 100 {
		if _, err := LanguageTag(fmt.Sprintf("en-x-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	knownTags.Range(func(any, any) bool { n++; return true })
	if n > maxKnownTags || knownTagCount.Load() > maxKnownTags {
		t.Fatalf("%d tags remembered (count %d), cap %d", n, knownTagCount.Load(), maxKnownTags)
	}
}
