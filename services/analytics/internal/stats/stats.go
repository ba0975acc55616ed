// Package stats is the logic of the per-movie rating statistics: what one
// review contributes to its movie (counted once, with its latest rating),
// and how a normalized change replaces that contribution. It decides which
// change wins with the processor's own rules (pkg/dedupe), so duplicates,
// stale versions and same-version conflicts settle exactly as in the
// serving store. Pure; safe for concurrent use.
package stats

import (
	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// Buckets is the number of histogram buckets: [0,10), [10,20), ...,
// [80,90), [90,100].
const Buckets = 10

// Bucket returns the histogram bucket of a rating of 0 to 100.
func Bucket(rating int) int { return max(0, min(Buckets-1, rating/10)) }

// Review is what the statistics keep of one review: the change applied last
// and what it contributes.
type Review struct {
	ID string
	// MovieID is the review's movie; a delete that does not name its
	// movie keeps the one before.
	MovieID string
	// Change is the last applied change (version, content hash, deleted).
	Change dedupe.Entry
	// Rating is 0 to 100, or nil when the review has none or is deleted.
	Rating *int
}

// Live reports whether r counts towards its movie.
func (r Review) Live() bool { return !r.Change.Deleted && r.MovieID != "" }

// Movie is one movie's statistics, or a change of them.
type Movie struct {
	// Reviews counts live reviews, rated or not.
	Reviews int64
	// Ratings counts live reviews with a rating.
	Ratings int64
	// Sum adds their ratings.
	Sum int64
	// Histogram counts their ratings per bucket.
	Histogram [Buckets]int64
}

// Mean returns the mean rating, or false when no review is rated.
func (m Movie) Mean() (float64, bool) {
	if m.Ratings == 0 {
		return 0, false
	}
	return float64(m.Sum) / float64(m.Ratings), true
}

// IsZero reports whether m changes nothing.
func (m Movie) IsZero() bool { return m == Movie{} }

// add adds r's contribution to m, or takes it out with sign -1.
func (m *Movie) add(r Review, sign int64) {
	if !r.Live() {
		return
	}
	m.Reviews += sign
	if r.Rating != nil {
		m.Ratings += sign
		m.Sum += sign * int64(*r.Rating)
		m.Histogram[Bucket(*r.Rating)] += sign
	}
}

// Merge adds o to m.
func (m *Movie) Merge(o Movie) {
	m.Reviews += o.Reviews
	m.Ratings += o.Ratings
	m.Sum += o.Sum
	for i := range m.Histogram {
		m.Histogram[i] += o.Histogram[i]
	}
}

// Delta collects the changes of a batch per movie id. Not safe for
// concurrent use.
type Delta map[string]*Movie

func (d Delta) movie(id string) *Movie {
	m, ok := d[id]
	if !ok {
		m = &Movie{}
		d[id] = m
	}
	return m
}

// Apply applies the normalized change ev to the review's state prev (nil
// when the review is unseen). When ev wins (dedupe: new, update or a won
// conflict), it takes prev's contribution out of d, adds the new one, and
// returns the new state; otherwise it returns prev unchanged. The decision
// says which.
func Apply(prev *Review, ev review.Event, d Delta) (Review, dedupe.Decision) {
	in := dedupe.EntryOf(ev, -1)
	var cur dedupe.Entry
	if prev != nil {
		cur = prev.Change
	}
	dec := dedupe.Decide(cur, prev != nil, in, 0)
	if !dec.Changes() {
		return *prev, dec
	}
	next := Review{ID: ev.Review.ID, MovieID: ev.Review.MovieID, Change: in}
	if ev.Op == review.OpDelete {
		if next.MovieID == "" && prev != nil {
			next.MovieID = prev.MovieID
		}
	} else if ev.Review.Rating != nil {
		r := *ev.Review.Rating
		next.Rating = &r
	}
	if prev != nil {
		d.movie(prev.MovieID).add(*prev, -1)
	}
	d.movie(next.MovieID).add(next, +1)
	return next, dec
}
