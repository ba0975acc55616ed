package review

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The field limits of a review, for every provider after normalization.
// Lengths in characters count Unicode code points; in bytes, UTF-8 bytes.
const (
	MaxExternalIDBytes = 200
	MaxAuthorChars     = 500
	MaxTitleChars      = 1000
	MaxMovieTitleChars = 1000
	MaxURLBytes        = 2048
	MaxBodyBytes       = 100 * 1024
)

// Reason classifies why a record is refused; it is the dead-letter reason.
// Every stage names its refusals with these (and a few of its own), so an
// operator filters dead letters by one vocabulary.
type Reason string

// The reasons of the shared model. Stages add their own for what only
// they see (an envelope that is not JSON, a record Kafka refuses).
const (
	// ReasonInvalidField: a field is missing, malformed or out of range.
	ReasonInvalidField Reason = "invalid_field"
	// ReasonFieldTooLong: a field is over its limit (see the Max constants).
	ReasonFieldTooLong Reason = "field_too_long"
	// ReasonTooLarge: Kafka refuses the record as too large, alone.
	ReasonTooLarge Reason = "too_large"
)

// Error is a permanent record error: retrying the same bytes fails again.
type Error struct {
	Reason Reason
	Msg    string
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Msg }

// Errorf builds a permanent *Error.
func Errorf(reason Reason, format string, args ...any) error {
	return &Error{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the Reason of a permanent error, or "" for any other error.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Validate checks a normalized event against the model's rules: the op,
// the id and its parts, the version, the movie id, the rating's range,
// text that is UTF-8 without NUL bytes, the language tag, and the field
// limits. It is the one check of a record's validity: the adapters call
// it on what they normalized, the sink, redrive and analytics on what they
// read, so every stage refuses the same records for the same reason. Pure
// and safe for concurrent use.
func Validate(ev Event) error {
	r := ev.Review
	switch {
	case ev.Op != OpUpsert && ev.Op != OpDelete:
		return Errorf(ReasonInvalidField, "op %q is neither %q nor %q", ev.Op, OpUpsert, OpDelete)
	case r.Provider == "" || strings.TrimSpace(r.ExternalID) == "":
		return Errorf(ReasonInvalidField, "review.provider and review.external_id are required")
	case r.ID != Key(r.Provider, r.ExternalID):
		return Errorf(ReasonInvalidField, "review.id %q is not %q", r.ID, Key(r.Provider, r.ExternalID))
	case r.Version < 1:
		return Errorf(ReasonInvalidField, "review.version must be >= 1, got %d", r.Version)
	case r.MovieID != "" && !ValidMovieID(r.MovieID):
		return Errorf(ReasonInvalidField, "review.movie_id %q is not an IMDb id (tt + 7 to 10 digits)", r.MovieID)
	case r.SourceUpdatedAt.IsZero() && ev.Op == OpUpsert:
		return Errorf(ReasonInvalidField, "review.source_updated_at is required for an upsert")
	case r.MovieID == "" && ev.Op == OpUpsert:
		return Errorf(ReasonInvalidField, "review.movie_id is required for an upsert")
	case r.Rating != nil && (*r.Rating < 0 || *r.Rating > 100):
		return Errorf(ReasonInvalidField, "review.rating %d is outside 0..100", *r.Rating)
	}
	for _, f := range [...]struct{ name, v string }{
		{"id", r.ID}, {"provider", r.Provider}, {"external_id", r.ExternalID}, {"author", r.Author},
		{"title", r.Title}, {"body", r.Body}, {"language", r.Language}, {"url", r.URL},
	} {
		if !utf8.ValidString(f.v) || strings.IndexByte(f.v, 0) >= 0 {
			return Errorf(ReasonInvalidField, "review.%s has invalid UTF-8 or a NUL byte", f.name)
		}
	}
	if err := CheckLimits(r.ExternalID, r.Author, r.Title, r.URL, r.Body); err != nil {
		return err
	}
	if r.Language != "" {
		if _, err := LanguageTag(r.Language); err != nil {
			return Errorf(ReasonInvalidField, "review.language: %v", err)
		}
	}
	return nil
}

// CheckLimits checks the field limits of a review's texts, as a provider
// sent them (adapters call it before cleaning the text, so a limit means
// the same for every provider) and as they are stored.
func CheckLimits(externalID, author, title, url, body string) error {
	switch {
	case len(externalID) > MaxExternalIDBytes:
		return Errorf(ReasonFieldTooLong, "review_id is %d bytes, at most %d", len(externalID), MaxExternalIDBytes)
	case len(body) > MaxBodyBytes:
		return Errorf(ReasonFieldTooLong, "body is %d bytes, at most %d", len(body), MaxBodyBytes)
	case len(url) > MaxURLBytes:
		return Errorf(ReasonFieldTooLong, "url is %d bytes, at most %d", len(url), MaxURLBytes)
	}
	if err := CheckChars("author", author, MaxAuthorChars); err != nil {
		return err
	}
	return CheckChars("title", title, MaxTitleChars)
}

// CheckChars fails with ReasonFieldTooLong when s has more than max
// characters (code points; invalid bytes count one each).
func CheckChars(field, s string, max int) error {
	if len(s) <= max {
		return nil // fewer bytes than max: fewer characters too
	}
	if n := utf8.RuneCountInString(s); n > max {
		return Errorf(ReasonFieldTooLong, "%s is %d characters, at most %d", field, n, max)
	}
	return nil
}
