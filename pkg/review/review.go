// Package review is the shared model of reviewpipe: the canonical review that
// the read API and reviews.normalized.v1 carry, the normalized event, and the
// rules every stage agrees on (ids, rating scale, validation).
//
// It knows nothing of Kafka or PostgreSQL; it is pure and safe for concurrent use.
package review

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
)

// Review is the canonical review (docs/contract.md §3). Field order and JSON names are
// part of the versioned contract in schemas/; add fields, never rename them.
type Review struct {
	ID              string    `json:"id"`
	Provider        string    `json:"provider"`
	ExternalID      string    `json:"external_id"`
	MovieID         string    `json:"movie_id"`
	Author          string    `json:"author"`
	Rating          *int      `json:"rating"`
	Title           string    `json:"title"`
	Body            string    `json:"body"`
	Language        string    `json:"language"`
	URL             string    `json:"url"`
	Version         int64     `json:"version"`
	SourceUpdatedAt time.Time `json:"source_updated_at"`
	IngestedAt      time.Time `json:"ingested_at"`
}

// Op is what a normalized event does to its review.
type Op string

// The operations of reviews.normalized.v1.
const (
	OpUpsert Op = "upsert"
	OpDelete Op = "delete"
)

// Event is the value of a reviews.normalized.v1 record. For a delete, Review
// carries at least ID, Provider, ExternalID, Version and SourceUpdatedAt
// (MovieID when the provider said it).
type Event struct {
	Op     Op     `json:"op"`
	Review Review `json:"review"`
	// Repair marks an event that `reviewctl reconcile --apply` sent, so repairs
	// are auditable downstream. Omitted otherwise.
	Repair bool `json:"repair,omitempty"`
}

// Key returns the record key shared by reviews.raw.v1 and
// reviews.normalized.v1: "{provider}:{review_id}".
func Key(provider, externalID string) string { return provider + ":" + externalID }

// ValidMovieID reports whether id is an IMDb title id ("tt" + 7 to 10
// digits). It is ^tt[0-9]{7,10}$ written out: the regexp was a fifth of a
// review's validation.
func ValidMovieID(id string) bool {
	if len(id) < 9 || len(id) > 12 || id[0] != 't' || id[1] != 't' {
		return false
	}
	for i := 2; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return false
		}
	}
	return true
}

// Rating maps value on a scale of 0..scale to the canonical 0..100, rounding
// half away from zero; values outside the scale are clamped. It fails on a
// non-positive or non-finite scale or a non-finite value.
func Rating(value, scale float64) (int, error) {
	if !(scale > 0) || math.IsInf(scale, 0) {
		return 0, fmt.Errorf("rating scale must be a positive number, got %v", scale)
	}
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return 0, fmt.Errorf("rating value must be a finite number, got %v", value)
	}
	r := math.Round(value / scale * 100)
	return int(math.Max(0, math.Min(100, r))), nil
}

// ContentHash is a stable digest of everything in r that a reader can see,
// excluding IngestedAt (which differs between two receipts of one change).
// Two events with equal Version and equal ContentHash are exact duplicates.
func ContentHash(op Op, r Review) string {
	h := sha256.New()
	rating := "null"
	if r.Rating != nil {
		rating = fmt.Sprint(*r.Rating)
	}
	for _, s := range []string{string(op), r.ID, r.MovieID, r.Author, rating, r.Title, r.Body,
		r.Language, r.URL, fmt.Sprint(r.Version), r.SourceUpdatedAt.UTC().Format(time.RFC3339Nano)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// CleanText removes control characters other than newline and tab, and
// invalid UTF-8, keeping the text otherwise as the provider wrote it.
func CleanText(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToValidUTF8(s, "")
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, s)
}

// Marshal encodes e as the reviews.normalized.v1 value.
func (e Event) Marshal() ([]byte, error) { return jsonx.Marshal(e) }
