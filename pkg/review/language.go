package review

import (
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/text/language"
)

// LanguageTag checks a BCP 47 tag and returns its canonical form ("en-us"
// becomes "en-US"). It fails on a tag that is not well-formed.
//
// Reviews carry few distinct tags, and parsing one was a third of a
// review's validation: answers for well-formed tags are remembered, about
// maxKnownTags of them at most (concurrent callers may each add one past
// it), so that arbitrary input cannot grow the memory.
func LanguageTag(s string) (string, error) {
	if v, ok := knownTags.Load(s); ok {
		return v.(string), nil
	}
	tag, err := language.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a BCP 47 language tag", s)
	}
	canonical := tag.String()
	if knownTagCount.Load() < maxKnownTags {
		if _, loaded := knownTags.LoadOrStore(s, canonical); !loaded {
			knownTagCount.Add(1)
		}
	}
	return canonical, nil
}

const maxKnownTags = 4096

var (
	knownTags     sync.Map // tag as written -> canonical form
	knownTagCount atomic.Int64
)
