package catalog

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// nativeInput is a change in generic data with version and updated_at
// settled; first says the review is new to the provider.
type nativeInput struct {
	op      Op
	data    provider.GenericData
	updated time.Time
	first   bool
	letter  bool
}

// nativeFunc writes a change as the provider's own event.
type nativeFunc func(in nativeInput) (json.RawMessage, error)

func genericEvent(in nativeInput) (json.RawMessage, error) {
	ev := provider.GenericEvent{Type: provider.GenericUpserted, Data: in.data}
	if in.op == OpDelete {
		d := in.data
		ev = provider.GenericEvent{Type: provider.GenericDeleted, Data: provider.GenericData{
			ReviewID: d.ReviewID, Version: d.Version, UpdatedAt: d.UpdatedAt, Movie: d.Movie,
		}}
	}
	return json.Marshal(ev)
}

func cinescoreEvent(in nativeInput) (json.RawMessage, error) {
	d := in.data
	n := provider.CinescoreNotification{
		CritiqueID: d.ReviewID,
		Rev:        d.Version,
		ModifiedMs: in.updated.UnixMilli(),
		Film:       &provider.CinescoreFilm{Imdb: d.Movie.ImdbID, Name: d.Movie.Title},
	}
	if in.op == OpDelete {
		n.Removed = true
		return json.Marshal(n)
	}
	if d.Author != "" {
		n.Critic = &provider.CinescoreCritic{Name: d.Author}
	}
	n.Headline, n.Text, n.Lang, n.Permalink = d.Title, d.Body, d.Language, d.URL
	if d.Rating != nil {
		frac, err := fraction(d.Rating)
		if err != nil {
			return nil, err
		}
		stars := math.Round(frac*provider.CinescoreMaxStars*2) / 2
		n.Stars = &stars
	}
	return json.Marshal(n)
}

func reelpulseEvent(in nativeInput) (json.RawMessage, error) {
	d := in.data
	ch := provider.ReelpulseChange{Event: provider.ReelpulseEdited, Post: provider.ReelpulsePost{
		UID:      d.ReviewID,
		Revision: d.Version,
		Edited:   provider.FormatReelpulseTime(in.updated),
		TitleRef: &provider.ReelpulseTitleRef{Imdb: d.Movie.ImdbID, Label: d.Movie.Title},
	}}
	switch {
	case in.op == OpDelete:
		ch.Event = provider.ReelpulseRetracted
		return json.Marshal(ch)
	case in.first:
		ch.Event = provider.ReelpulsePublished
	}
	p := &ch.Post
	p.Byline, p.Heading, p.Content, p.Link = d.Author, d.Title, d.Body, d.URL
	p.Locale = strings.ReplaceAll(d.Language, "-", "_")
	if d.Rating != nil {
		frac, err := fraction(d.Rating)
		if err != nil {
			return nil, err
		}
		if in.letter {
			top := len(provider.ReelpulseGrades) - 1
			p.Score = provider.ReelpulseGrades[int(math.Round(frac*float64(top)))]
		} else {
			// Four decimals: enough for any rating, and no float noise
			// such as "72.99999999999999%".
			p.Score = strconv.FormatFloat(math.Round(frac*100*1e4)/1e4, 'f', -1, 64) + "%"
		}
	}
	return json.Marshal(ch)
}

// fraction is a rating as a share of its scale, clamped to 0..1 as the
// canonical rating clamps it.
func fraction(r *provider.GenericRating) (float64, error) {
	if !(r.Scale > 0) || math.IsInf(r.Scale, 0) || math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
		return 0, fmt.Errorf("review.rating needs a finite value and a scale > 0, got %v of %v", r.Value, r.Scale)
	}
	return math.Max(0, math.Min(1, r.Value/r.Scale)), nil
}
