package review

import (
	"fmt"

	"golang.org/x/text/language"
)

// LanguageTag checks a BCP 47 tag and returns its canonical form ("en-us"
// becomes "en-US"). It fails on a tag that is not well-formed.
func LanguageTag(s string) (string, error) {
	tag, err := language.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a BCP 47 language tag", s)
	}
	return tag.String(), nil
}
