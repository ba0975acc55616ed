package provider

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// Reelpulse is the adapter of the "reelpulse" provider (docs/providers.md):
// deliveries are a bare JSON array of {"event", "post"} changes, times are
// "2006-01-02 15:04:05" in UTC, scores are letter grades or percentages,
// and deletes are "post.retracted" tombstones.
type Reelpulse struct{}

// Name implements Adapter.
func (Reelpulse) Name() string { return "reelpulse" }

// Event kinds of reelpulse. Published and edited are both upserts.
const (
	ReelpulsePublished = "post.published"
	ReelpulseEdited    = "post.edited"
	ReelpulseRetracted = "post.retracted"
)

// ReelpulseTimeLayout is the layout of post.edited, always in UTC.
const ReelpulseTimeLayout = "2006-01-02 15:04:05"

// ReelpulseChange is one change of one post, the shape of both webhooks
// (inside the delivery array) and the polling API.
type ReelpulseChange struct {
	Event string        `json:"event"`
	Post  ReelpulsePost `json:"post"`
}

// ReelpulsePost is the post of a change. A retraction carries only UID,
// Revision, Edited and (optionally) TitleRef.
type ReelpulsePost struct {
	UID      string             `json:"uid"`
	Revision int64              `json:"revision"`
	Edited   string             `json:"edited"`
	TitleRef *ReelpulseTitleRef `json:"title_ref,omitempty"`
	Byline   string             `json:"byline,omitempty"`
	Heading  string             `json:"heading,omitempty"`
	Content  string             `json:"content,omitempty"`
	// Score is a letter grade ("B+") or a percentage ("87%"); "" or null
	// means no score.
	Score  string `json:"score,omitempty"`
	Locale string `json:"locale,omitempty"`
	Link   string `json:"link,omitempty"`
}

// ReelpulseTitleRef identifies the reviewed title.
type ReelpulseTitleRef struct {
	Imdb  string `json:"imdb"`
	Label string `json:"label,omitempty"`
}

// ReelpulseGrades lists the letter grades from worst to best; grade i maps
// to round(i / 12 * 100).
var ReelpulseGrades = []string{"F", "D-", "D", "D+", "C-", "C", "C+", "B-", "B", "B+", "A-", "A", "A+"}

// Split implements Adapter.
func (p Reelpulse) Split(body []byte) ([]RawEvent, error) {
	trimmed := bytes.TrimSpace(body)
	if err := checkJSON(trimmed, "body"); err != nil {
		return nil, err
	}
	if trimmed[0] != '[' {
		return nil, Errorf(ReasonUnknownShape, "body must be a JSON array of changes")
	}
	var raws []json.RawMessage
	if err := jsonx.Unmarshal(trimmed, &raws); err != nil {
		return nil, Errorf(ReasonUnknownShape, "body must be a JSON array of changes")
	}
	if len(raws) == 0 {
		return nil, Errorf(ReasonUnknownShape, "the array of changes is empty")
	}
	if len(raws) > MaxEventsPerDelivery {
		return nil, Errorf(ReasonTooManyEvents, "%d changes in one delivery, at most %d", len(raws), MaxEventsPerDelivery)
	}
	out := make([]RawEvent, 0, len(raws))
	for i, raw := range raws {
		ev, err := p.Normalize(raw, time.Time{})
		if refusesDelivery(err) {
			return nil, prefixErr(err, fmt.Sprintf("change %d: ", i))
		}
		out = append(out, RawEvent{ReviewID: ev.Review.ExternalID, Payload: raw})
	}
	return out, nil
}

// Normalize implements Adapter.
func (p Reelpulse) Normalize(payload []byte, ingestedAt time.Time) (review.Event, error) {
	var ch ReelpulseChange
	if err := decodeStrictObject(payload, &ch, "change"); err != nil {
		return review.Event{}, err
	}
	switch ch.Event {
	case ReelpulsePublished, ReelpulseEdited, ReelpulseRetracted:
	default:
		return review.Event{}, Errorf(ReasonUnknownShape, "event %q is none of %s, %s, %s",
			ch.Event, ReelpulsePublished, ReelpulseEdited, ReelpulseRetracted)
	}
	post := ch.Post
	if err := checkID("post.uid", post.UID); err != nil {
		return review.Event{}, err
	}
	if post.Revision < 1 {
		return review.Event{}, Errorf(ReasonInvalidField, "post.revision must be an integer >= 1, got %d", post.Revision)
	}
	edited, err := ParseReelpulseTime(post.Edited)
	if err != nil {
		return review.Event{}, err
	}
	r := review.Review{
		ID:              review.Key(p.Name(), post.UID),
		Provider:        p.Name(),
		ExternalID:      post.UID,
		Version:         post.Revision,
		SourceUpdatedAt: edited,
		IngestedAt:      ingestedAt.UTC(),
	}
	if post.TitleRef != nil {
		if !review.ValidMovieID(post.TitleRef.Imdb) {
			return review.Event{}, Errorf(ReasonInvalidField, "post.title_ref.imdb %q is not an IMDb id (tt + 7 to 10 digits)", post.TitleRef.Imdb)
		}
		r.MovieID = post.TitleRef.Imdb
	}
	if ch.Event == ReelpulseRetracted {
		return checked(review.Event{Op: review.OpDelete, Review: r}, "", sentTexts{})
	}
	if post.TitleRef == nil {
		return review.Event{}, Errorf(ReasonInvalidField, "post.title_ref is required for %s", ch.Event)
	}
	if strings.TrimSpace(post.Score) != "" {
		v, err := ReelpulseScore(post.Score)
		if err != nil {
			return review.Event{}, err
		}
		r.Rating = &v
	}
	if post.Locale != "" {
		tag, err := review.LanguageTag(strings.ReplaceAll(post.Locale, "_", "-"))
		if err != nil {
			return review.Event{}, Errorf(ReasonInvalidField, "post.locale: %v", err)
		}
		r.Language = tag
	}
	if post.Link != "" {
		if err := checkURL("post.link", post.Link); err != nil {
			return review.Event{}, err
		}
		r.URL = post.Link
	}
	r.Author = review.CleanText(post.Byline)
	r.Title = review.CleanText(post.Heading)
	r.Body = review.CleanText(post.Content)
	ev := review.Event{Op: review.OpUpsert, Review: r}
	return checked(ev, post.TitleRef.Label, sentTexts{author: post.Byline, title: post.Heading, url: post.Link, body: post.Content})
}

// ParseReelpulseTime parses post.edited ("2006-01-02 15:04:05", UTC,
// fractional seconds tolerated). The error is a permanent *Error.
func ParseReelpulseTime(s string) (time.Time, error) {
	t, err := time.ParseInLocation(ReelpulseTimeLayout, s, time.UTC)
	if err != nil {
		return time.Time{}, Errorf(ReasonInvalidField, "post.edited %q is not a UTC time like %q", s, ReelpulseTimeLayout)
	}
	return t.UTC(), nil
}

// FormatReelpulseTime writes t as reelpulse does, in UTC to the second.
func FormatReelpulseTime(t time.Time) string { return t.UTC().Format(ReelpulseTimeLayout) }

// ReelpulseScore maps a score to the canonical 0..100: a letter grade by its
// place in ReelpulseGrades (case-insensitive), a percentage ("87.5%") by
// rounding. The error is a permanent *Error.
func ReelpulseScore(score string) (int, error) {
	s := strings.TrimSpace(score)
	if num, ok := strings.CutSuffix(s, "%"); ok {
		pct, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || math.IsNaN(pct) || pct < 0 || pct > 100 {
			return 0, Errorf(ReasonInvalidField, "post.score %q is not a percentage from 0%% to 100%%", score)
		}
		v, err := review.Rating(pct, 100)
		if err != nil {
			return 0, Errorf(ReasonInvalidField, "post.score: %v", err)
		}
		return v, nil
	}
	up := strings.ToUpper(s)
	for i, g := range ReelpulseGrades {
		if up == g {
			v, _ := review.Rating(float64(i), float64(len(ReelpulseGrades)-1))
			return v, nil
		}
	}
	return 0, Errorf(ReasonInvalidField, "post.score %q is neither a letter grade (F to A+) nor a percentage", score)
}
