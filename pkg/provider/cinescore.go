package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// Cinescore is the adapter of the "cinescore" provider (docs/providers.md):
// deliveries are {"notifications": [...]}, one flat notification per
// critique, epoch-millisecond times, 0 to 10 stars in halves, and deletes
// flagged by "removed": true.
type Cinescore struct{}

// Name implements Adapter.
func (Cinescore) Name() string { return "cinescore" }

// CinescoreDelivery is a cinescore webhook body. Notifications stay raw so
// that each one's bytes travel untouched.
type CinescoreDelivery struct {
	DeliveryID    string            `json:"deliveryId,omitempty"`
	SentMs        int64             `json:"sentMs,omitempty"`
	Notifications []json.RawMessage `json:"notifications"`
}

// CinescoreNotification is one change of one critique, the shape of both
// webhooks and the polling API.
type CinescoreNotification struct {
	CritiqueID string           `json:"critiqueId"`
	Rev        int64            `json:"rev"`
	ModifiedMs int64            `json:"modifiedMs"`
	Removed    bool             `json:"removed,omitempty"`
	Film       *CinescoreFilm   `json:"film,omitempty"`
	Critic     *CinescoreCritic `json:"critic,omitempty"`
	Headline   string           `json:"headline,omitempty"`
	Text       string           `json:"text,omitempty"`
	// Stars is 0 to 10 in steps of 0.5; nil means no rating.
	Stars     *float64 `json:"stars,omitempty"`
	Lang      string   `json:"lang,omitempty"`
	Permalink string   `json:"permalink,omitempty"`
}

// CinescoreFilm identifies the reviewed film.
type CinescoreFilm struct {
	Imdb string `json:"imdb"`
	Name string `json:"name,omitempty"`
}

// CinescoreCritic is the critique's author.
type CinescoreCritic struct {
	Name string `json:"name,omitempty"`
}

// CinescoreMaxStars is the top of cinescore's star scale.
const CinescoreMaxStars = 10

// maxEpochMs is 9999-12-31T23:59:59.999Z: later times cannot be written as
// RFC 3339, which the canonical review needs.
const maxEpochMs = 253402300799999

// Split implements Adapter.
func (c Cinescore) Split(body []byte) ([]RawEvent, error) {
	trimmed := bytes.TrimSpace(body)
	if err := checkJSON(trimmed, "body"); err != nil {
		return nil, err
	}
	var probe map[string]json.RawMessage
	if err := jsonx.Unmarshal(trimmed, &probe); err != nil || probe == nil {
		return nil, Errorf(ReasonUnknownShape, `body must be a JSON object {"notifications": [...]}`)
	}
	notes, ok := probe["notifications"]
	if !ok {
		return nil, Errorf(ReasonUnknownShape, `body has no "notifications" array`)
	}
	var raws []json.RawMessage
	if err := jsonx.Unmarshal(notes, &raws); err != nil {
		return nil, Errorf(ReasonUnknownShape, `"notifications" must be an array of notifications`)
	}
	if len(raws) == 0 {
		return nil, Errorf(ReasonUnknownShape, `"notifications" is empty`)
	}
	if len(raws) > MaxEventsPerDelivery {
		return nil, Errorf(ReasonTooManyEvents, "%d notifications in one delivery, at most %d", len(raws), MaxEventsPerDelivery)
	}
	out := make([]RawEvent, 0, len(raws))
	for i, raw := range raws {
		ev, err := c.Normalize(raw, time.Time{})
		if refusesDelivery(err) {
			return nil, prefixErr(err, fmt.Sprintf("notification %d: ", i))
		}
		out = append(out, RawEvent{ReviewID: ev.Review.ExternalID, Payload: raw})
	}
	return out, nil
}

// Normalize implements Adapter.
func (c Cinescore) Normalize(payload []byte, ingestedAt time.Time) (review.Event, error) {
	var n CinescoreNotification
	if err := decodeStrictObject(payload, &n, "notification"); err != nil {
		return review.Event{}, err
	}
	if err := checkID("critiqueId", n.CritiqueID); err != nil {
		return review.Event{}, err
	}
	if n.Rev < 1 {
		return review.Event{}, Errorf(ReasonInvalidField, "rev must be an integer >= 1, got %d", n.Rev)
	}
	if n.ModifiedMs < 1 || n.ModifiedMs > maxEpochMs {
		return review.Event{}, Errorf(ReasonInvalidField, "modifiedMs %d is not epoch milliseconds between 1970 and 9999", n.ModifiedMs)
	}
	r := review.Review{
		ID:              review.Key(c.Name(), n.CritiqueID),
		Provider:        c.Name(),
		ExternalID:      n.CritiqueID,
		Version:         n.Rev,
		SourceUpdatedAt: time.UnixMilli(n.ModifiedMs).UTC(),
		IngestedAt:      ingestedAt.UTC(),
	}
	if n.Film != nil {
		if !review.ValidMovieID(n.Film.Imdb) {
			return review.Event{}, Errorf(ReasonInvalidField, "film.imdb %q is not an IMDb id (tt + 7 to 10 digits)", n.Film.Imdb)
		}
		r.MovieID = n.Film.Imdb
	}
	if n.Removed {
		return checked(review.Event{Op: review.OpDelete, Review: r}, "", sentTexts{})
	}
	if n.Film == nil {
		return review.Event{}, Errorf(ReasonInvalidField, "film is required unless removed is true")
	}
	if n.Stars != nil {
		s := *n.Stars
		if !(s >= 0 && s <= CinescoreMaxStars) || s*2 != math.Trunc(s*2) {
			return review.Event{}, Errorf(ReasonInvalidField, "stars %v is not 0 to %d in steps of 0.5", s, CinescoreMaxStars)
		}
		v, err := review.Rating(s, CinescoreMaxStars)
		if err != nil {
			return review.Event{}, Errorf(ReasonInvalidField, "stars: %v", err)
		}
		r.Rating = &v
	}
	if n.Lang != "" {
		tag, err := review.LanguageTag(n.Lang)
		if err != nil {
			return review.Event{}, Errorf(ReasonInvalidField, "lang: %v", err)
		}
		r.Language = tag
	}
	if n.Permalink != "" {
		if err := checkURL("permalink", n.Permalink); err != nil {
			return review.Event{}, err
		}
		r.URL = n.Permalink
	}
	sent := sentTexts{title: n.Headline, url: n.Permalink, body: n.Text}
	if n.Critic != nil {
		sent.author = n.Critic.Name
		r.Author = review.CleanText(n.Critic.Name)
	}
	r.Title = review.CleanText(n.Headline)
	r.Body = review.CleanText(n.Text)
	return checked(review.Event{Op: review.OpUpsert, Review: r}, n.Film.Name, sent)
}

// decodeStrictObject decodes one JSON object into v. A payload that is not
// JSON is ReasonNotJSON; one that is not an object is ReasonUnknownShape; a
// known field of the wrong type is ReasonInvalidField naming the field.
func decodeStrictObject(payload []byte, v any, what string) error {
	trimmed := bytes.TrimSpace(payload)
	if err := checkJSON(trimmed, what); err != nil {
		return err
	}
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Errorf(ReasonUnknownShape, "%s must be a JSON object", what)
	}
	if err := jsonx.Unmarshal(trimmed, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Errorf(ReasonInvalidField, "%s: %s is a JSON %s, want %s", what, te.Field, te.Value, jsonKind(te.Type))
		}
		return Errorf(ReasonUnknownShape, "%s does not match the expected shape: %v", what, err)
	}
	return nil
}

func jsonKind(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "another type"
}

// checkID checks a provider review id: 1 to 256 bytes of valid UTF-8 with
// no control characters and not only spaces.
func checkID(field, id string) error {
	switch {
	case strings.TrimSpace(id) == "":
		return Errorf(ReasonInvalidField, "%s is required", field)
	case !utf8.ValidString(id) || review.CleanText(id) != id || strings.ContainsAny(id, "\n\t"):
		return Errorf(ReasonInvalidField, "%s %q holds invalid UTF-8 or control characters", field, id)
	}
	return nil
}

// checkURL accepts an absolute http(s) URL with a host.
func checkURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Errorf(ReasonInvalidField, "%s %q is not an absolute http(s) URL", field, s)
	}
	return nil
}
