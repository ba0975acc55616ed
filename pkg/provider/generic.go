package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// Generic is the adapter of the "generic" provider, whose payload docs/contract.md §2
// fixes: one event, or {"events": [...]} of at most 500.
type Generic struct{}

// Name implements Adapter.
func (Generic) Name() string { return "generic" }

// GenericEvent is one event of the generic provider.
type GenericEvent struct {
	Type string      `json:"type"`
	Data GenericData `json:"data"`
}

// GenericData is the review data of a generic event; the simulator's control
// API takes the same shape.
type GenericData struct {
	ReviewID  string         `json:"review_id"`
	Version   int64          `json:"version"`
	UpdatedAt string         `json:"updated_at"`
	Movie     *GenericMovie  `json:"movie,omitempty"`
	Author    string         `json:"author,omitempty"`
	Title     string         `json:"title,omitempty"`
	Body      string         `json:"body,omitempty"`
	Rating    *GenericRating `json:"rating,omitempty"`
	Language  string         `json:"language,omitempty"`
	URL       string         `json:"url,omitempty"`
}

// GenericMovie identifies the reviewed movie.
type GenericMovie struct {
	ImdbID string `json:"imdb_id"`
	Title  string `json:"title"`
}

// GenericRating is a rating on the provider's scale.
type GenericRating struct {
	Value float64 `json:"value"`
	Scale float64 `json:"scale"`
}

// Event types of the generic provider.
const (
	GenericUpserted = "review.upserted"
	GenericDeleted  = "review.deleted"
)

// genericBody is a delivery: one event, or {"events": [...]}. Decoding it
// once gives both shapes (a single event fills the embedded fields; each
// item of a batch decodes itself), where taking the body apart with
// json.RawMessage scanned every event four to six times.
type genericBody struct {
	Events *[]genericItem `json:"events"`
	GenericEvent
}

// genericItem is one event of a batch with its own bytes, the payload it
// is published with, and its decoding error, reported with its index.
type genericItem struct {
	raw json.RawMessage
	ev  GenericEvent
	err error
}

func (it *genericItem) UnmarshalJSON(b []byte) error {
	it.raw = append(json.RawMessage(nil), b...)
	it.ev, it.err = decodeGeneric(it.raw)
	return nil
}

// Split implements Adapter.
func (g Generic) Split(body []byte) ([]RawEvent, error) {
	trimmed := bytes.TrimSpace(body)
	if !utf8.Valid(trimmed) {
		return nil, errNotUTF8("body")
	}
	var b genericBody
	if err := jsonx.Unmarshal(trimmed, &b); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntax) || len(trimmed) == 0:
			return nil, Errorf(ReasonNotJSON, "body is not valid JSON")
		case errors.As(err, &typ) && typ.Field == "":
			return nil, Errorf(ReasonUnknownShape, "body must be a JSON object")
		case errors.As(err, &typ) && typ.Field == "events":
			return nil, Errorf(ReasonUnknownShape, `"events" must be an array of events`)
		case b.Events == nil:
			// One event whose fields have the wrong types.
			return nil, Errorf(ReasonUnknownShape, "event 0: event does not match the generic shape: %v", err)
		}
		// A batch: fields beside "events" do not matter.
	}
	if b.Events == nil {
		if err := checkGenericType(b.GenericEvent); err != nil {
			return nil, prefixErr(err, "event 0: ")
		}
		if _, err := g.normalizeEvent(b.GenericEvent, time.Time{}); refusesDelivery(err) {
			return nil, prefixErr(err, "event 0: ")
		}
		return []RawEvent{{ReviewID: b.Data.ReviewID, Payload: trimmed}}, nil
	}
	items := *b.Events
	if len(items) == 0 {
		return nil, Errorf(ReasonUnknownShape, `"events" is empty`)
	}
	if len(items) > MaxEventsPerDelivery {
		return nil, Errorf(ReasonTooManyEvents, "%d events in one delivery, at most %d", len(items), MaxEventsPerDelivery)
	}
	out := make([]RawEvent, 0, len(items))
	for i, it := range items {
		if it.err != nil {
			return nil, prefixErr(it.err, fmt.Sprintf("event %d: ", i))
		}
		if _, err := g.normalizeEvent(it.ev, time.Time{}); refusesDelivery(err) {
			return nil, prefixErr(err, fmt.Sprintf("event %d: ", i))
		}
		out = append(out, RawEvent{ReviewID: it.ev.Data.ReviewID, Payload: it.raw})
	}
	return out, nil
}

// Normalize implements Adapter.
func (g Generic) Normalize(payload []byte, ingestedAt time.Time) (review.Event, error) {
	ev, err := decodeGeneric(payload)
	if err != nil {
		return review.Event{}, err
	}
	return g.normalizeEvent(ev, ingestedAt)
}

func decodeGeneric(raw []byte) (GenericEvent, error) {
	var ev GenericEvent
	if !utf8.Valid(raw) {
		return ev, errNotUTF8("event")
	}
	if err := jsonx.Unmarshal(raw, &ev); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || len(bytes.TrimSpace(raw)) == 0 {
			return ev, Errorf(ReasonNotJSON, "event is not valid JSON")
		}
		return ev, Errorf(ReasonUnknownShape, "event does not match the generic shape: %v", err)
	}
	return ev, checkGenericType(ev)
}

func checkGenericType(ev GenericEvent) error {
	if ev.Type != GenericUpserted && ev.Type != GenericDeleted {
		return Errorf(ReasonUnknownShape, "type %q is neither %q nor %q", ev.Type, GenericUpserted, GenericDeleted)
	}
	return nil
}

func (g Generic) normalizeEvent(ev GenericEvent, ingestedAt time.Time) (review.Event, error) {
	d := ev.Data
	if strings.TrimSpace(d.ReviewID) == "" {
		return review.Event{}, Errorf(ReasonInvalidField, "data.review_id is required")
	}
	if d.Version < 1 {
		return review.Event{}, Errorf(ReasonInvalidField, "data.version must be an integer >= 1, got %d", d.Version)
	}
	updated, err := time.Parse(time.RFC3339Nano, d.UpdatedAt)
	if err != nil {
		return review.Event{}, Errorf(ReasonInvalidField, "data.updated_at %q is not an RFC 3339 time", d.UpdatedAt)
	}
	if y := updated.UTC().Year(); y < 1 || y > 9999 {
		// RFC 3339 (and JSON encoding of time.Time) stops at year 9999 in UTC.
		return review.Event{}, Errorf(ReasonInvalidField, "data.updated_at %q is outside years 1 to 9999 in UTC", d.UpdatedAt)
	}
	r := review.Review{
		ID:              review.Key(g.Name(), d.ReviewID),
		Provider:        g.Name(),
		ExternalID:      d.ReviewID,
		Version:         d.Version,
		SourceUpdatedAt: updated.UTC(),
		IngestedAt:      ingestedAt.UTC(),
	}
	if d.Movie != nil && ev.Type == GenericDeleted && !review.ValidMovieID(d.Movie.ImdbID) {
		// A delete is keyed by the review id alone: a malformed movie id
		// must not lose it. The store keeps the movie of the existing row.
		d.Movie = nil
	}
	if d.Movie != nil {
		if !review.ValidMovieID(d.Movie.ImdbID) {
			return review.Event{}, Errorf(ReasonInvalidField, "data.movie.imdb_id %q is not an IMDb id (tt + 7 to 10 digits)", d.Movie.ImdbID)
		}
		r.MovieID = d.Movie.ImdbID
	}
	if ev.Type == GenericDeleted {
		return checked(review.Event{Op: review.OpDelete, Review: r}, "", sentTexts{})
	}
	if d.Movie == nil {
		return review.Event{}, Errorf(ReasonInvalidField, "data.movie is required for %s", GenericUpserted)
	}
	if d.Rating != nil {
		v, err := review.Rating(d.Rating.Value, d.Rating.Scale)
		if err != nil {
			return review.Event{}, Errorf(ReasonInvalidField, "data.rating: %v", err)
		}
		r.Rating = &v
	}
	if d.Language != "" {
		tag, err := review.LanguageTag(d.Language)
		if err != nil {
			return review.Event{}, Errorf(ReasonInvalidField, "data.language: %v", err)
		}
		r.Language = tag
	}
	if d.URL != "" {
		u, err := url.Parse(d.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return review.Event{}, Errorf(ReasonInvalidField, "data.url %q is not an absolute http(s) URL", d.URL)
		}
		r.URL = d.URL
	}
	r.Author = review.CleanText(d.Author)
	r.Title = review.CleanText(d.Title)
	r.Body = review.CleanText(d.Body)
	return checked(review.Event{Op: review.OpUpsert, Review: r}, d.Movie.Title,
		sentTexts{author: d.Author, title: d.Title, url: d.URL, body: d.Body})
}

func prefixErr(err error, prefix string) error {
	if pe, ok := err.(*Error); ok {
		return &Error{Reason: pe.Reason, Msg: prefix + pe.Msg}
	}
	return fmt.Errorf("%s%w", prefix, err)
}
