// Package catalog is one simulated provider's catalogue: the current state of
// its reviews and its change feed, an append-only log of every change in the
// order the provider recorded it (docs/providers.md). Each change is stored
// once, as the provider's own event bytes, which both its polling API and its
// webhooks send; so a poll and a webhook of one change are byte-identical.
//
// A Catalog is safe for concurrent use.
package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// Errors of Apply; the control API maps them to 400, 404 and 409.
var (
	ErrInvalid  = errors.New("invalid change")
	ErrNotFound = errors.New("no such review")
	ErrConflict = errors.New("version conflict")
)

// Op is what a change does.
type Op string

// The operations of the control API.
const (
	OpUpsert Op = "upsert"
	OpDelete Op = "delete"
)

// Change is a change to apply, in the generic data shape of docs/contract.md §6.
type Change struct {
	Op   Op
	Data provider.GenericData
	// LetterGrade asks reelpulse to write the rating as the nearest letter
	// grade instead of a percentage (the generator uses it).
	LetterGrade bool
}

// Entry is one change in the feed.
type Entry struct {
	// Seq is the 1-based position in the feed.
	Seq int64
	// Recorded is when the provider recorded the change; strictly
	// increasing along the feed at the provider's time granularity.
	Recorded time.Time
	ReviewID string
	MovieID  string
	Movie    string // the movie's title
	Version  int64
	Deleted  bool
	// Event is the provider's own event, exactly as its webhooks and its
	// polling API send it. Never modified after the entry is appended.
	Event json.RawMessage
}

// Catalog holds one provider's reviews and feed.
type Catalog struct {
	adapter provider.Adapter
	native  nativeFunc
	tick    time.Duration
	now     func() time.Time

	mu      sync.Mutex
	log     []Entry
	latest  map[string]int                 // review id -> index into log
	byMovie map[string]map[string]struct{} // movie id -> review ids ever seen
}

// New returns the empty catalogue of a provider that has an adapter; now
// is the clock (time.Now when nil).
func New(a provider.Adapter, now func() time.Time) (*Catalog, error) {
	c := &Catalog{adapter: a, now: now, latest: map[string]int{}, byMovie: map[string]map[string]struct{}{}}
	if c.now == nil {
		c.now = time.Now
	}
	n, ok := natives[a.Name()]
	if !ok {
		return nil, fmt.Errorf("catalog: no simulation of provider %q", a.Name())
	}
	c.native, c.tick = n.event, n.tick
	return c, nil
}

// native is how one provider writes its events (native.go) and the
// granularity of the times it records.
type native struct {
	event nativeFunc
	tick  time.Duration
}

// natives are the providers' event writers, by name. A test fails while a
// registered provider (pkg/provider) has none.
var natives = map[string]native{
	"generic":   {genericEvent, time.Microsecond},
	"cinescore": {cinescoreEvent, time.Millisecond},
	"reelpulse": {reelpulseEvent, time.Microsecond},
}

// Simulates reports whether the catalogue can write the provider's events.
func Simulates(name string) bool { _, ok := natives[name]; return ok }

// Name is the provider's name.
func (c *Catalog) Name() string { return c.adapter.Name() }

// Adapter is the provider's adapter.
func (c *Catalog) Adapter() provider.Adapter { return c.adapter }

// Apply records a change and returns its feed entry. A zero version means
// the current version + 1; an omitted updated_at means the record time.
// Errors wrap ErrInvalid, ErrNotFound or ErrConflict and leave the
// catalogue unchanged.
func (c *Catalog) Apply(ch Change) (Entry, error) {
	d := ch.Data
	if err := checkID(d.ReviewID); err != nil {
		return Entry{}, err
	}
	if ch.Op != OpUpsert && ch.Op != OpDelete {
		return Entry{}, fmt.Errorf("%w: op %q is neither %q nor %q", ErrInvalid, ch.Op, OpUpsert, OpDelete)
	}
	if d.Version < 0 {
		return Entry{}, fmt.Errorf("%w: version %d is negative", ErrInvalid, d.Version)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var cur *Entry
	if i, ok := c.latest[d.ReviewID]; ok {
		cur = &c.log[i]
	}
	switch {
	case d.Version == 0 && cur != nil:
		d.Version = cur.Version + 1
	case d.Version == 0:
		d.Version = 1
	case cur != nil && d.Version <= cur.Version:
		return Entry{}, fmt.Errorf("%w: version %d is not above the current version %d of %s",
			ErrConflict, d.Version, cur.Version, review.Key(c.Name(), d.ReviewID))
	}
	if ch.Op == OpDelete {
		if cur == nil {
			return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, review.Key(c.Name(), d.ReviewID))
		}
		d.Movie = &provider.GenericMovie{ImdbID: cur.MovieID, Title: cur.Movie}
	} else if d.Movie == nil {
		return Entry{}, fmt.Errorf("%w: review.movie is required for an upsert", ErrInvalid)
	}
	recorded := c.nextRecordTime()
	if d.UpdatedAt == "" {
		d.UpdatedAt = recorded.Format(time.RFC3339Nano)
	}
	updated, err := time.Parse(time.RFC3339Nano, d.UpdatedAt)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: review.updated_at %q is not an RFC 3339 time", ErrInvalid, d.UpdatedAt)
	}
	ev, err := c.native(nativeInput{op: ch.Op, data: d, updated: updated, first: cur == nil, letter: ch.LetterGrade})
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// The catalogue only holds what its own adapter accepts, so the
	// truth can always be derived.
	if _, err := c.adapter.Normalize(ev, time.Time{}); err != nil {
		return Entry{}, fmt.Errorf("%w: the %s event would be refused: %v", ErrInvalid, c.Name(), err)
	}
	e := Entry{
		Seq:      int64(len(c.log)) + 1,
		Recorded: recorded,
		ReviewID: d.ReviewID,
		MovieID:  d.Movie.ImdbID,
		Movie:    d.Movie.Title,
		Version:  d.Version,
		Deleted:  ch.Op == OpDelete,
		Event:    ev,
	}
	c.log = append(c.log, e)
	c.latest[d.ReviewID] = len(c.log) - 1
	if c.byMovie[e.MovieID] == nil {
		c.byMovie[e.MovieID] = map[string]struct{}{}
	}
	c.byMovie[e.MovieID][e.ReviewID] = struct{}{}
	return e, nil
}

// nextRecordTime is now at the provider's granularity, or one tick past
// the last record time if the clock has not moved on (or went back).
// Called with mu held.
func (c *Catalog) nextRecordTime() time.Time {
	t := c.now().UTC().Truncate(c.tick)
	if n := len(c.log); n > 0 && !t.After(c.log[n-1].Recorded) {
		t = c.log[n-1].Recorded.Add(c.tick)
	}
	return t
}

// Tick is the granularity of record times: generic and reelpulse
// microseconds, cinescore milliseconds.
func (c *Catalog) Tick() time.Duration { return c.tick }

// Page lists the feed's entries recorded at or after since (of movie, when
// not empty), skipping offset and returning at most limit. total counts
// every match; watermark is the record time of the last match among the
// first offset+limit (zero when there is none), where a client resumes.
func (c *Catalog) Page(since time.Time, movie string, offset, limit int) (entries []Entry, total int, watermark time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := sort.Search(len(c.log), func(i int) bool { return !c.log[i].Recorded.Before(since) })
	tail := c.log[start:]
	if movie == "" {
		total = len(tail)
		lo, hi := clamp(offset, total), clamp(offset+limit, total)
		if hi > 0 {
			watermark = tail[hi-1].Recorded
		}
		return append([]Entry(nil), tail[lo:hi]...), total, watermark
	}
	for i := range tail {
		if tail[i].MovieID != movie {
			continue
		}
		if total < offset+limit {
			watermark = tail[i].Recorded
			if total >= offset {
				entries = append(entries, tail[i])
			}
		}
		total++
	}
	return entries, total, watermark
}

// After lists at most limit entries with Seq above seq; more says that
// further entries follow.
func (c *Catalog) After(seq int64, limit int) (entries []Entry, more bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := int64(len(c.log))
	if seq < 0 {
		seq = 0
	}
	if seq >= n {
		return nil, false
	}
	hi := min(seq+int64(limit), n)
	return append([]Entry(nil), c.log[seq:hi]...), hi < n
}

// SeqBefore is the Seq of the last entry recorded before t (0 when none):
// a feed read "after" it starts at the first change recorded at or after t.
func (c *Catalog) SeqBefore(t time.Time) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(sort.Search(len(c.log), func(i int) bool { return !c.log[i].Recorded.Before(t) }))
}

// Len is the number of entries in the feed.
func (c *Catalog) Len() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(len(c.log))
}

// Current lists the newest entry of every review of movie (deletes
// included), sorted by review id.
func (c *Catalog) Current(movie string) []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.byMovie[movie]))
	for id := range c.byMovie[movie] {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]Entry, 0, len(ids))
	for _, id := range ids {
		e := c.log[c.latest[id]]
		if e.MovieID == movie { // the review may have moved to another movie
			out = append(out, e)
		}
	}
	return out
}

// Latest returns the newest entry of a review, or false.
func (c *Catalog) Latest(reviewID string) (Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.latest[reviewID]
	if !ok {
		return Entry{}, false
	}
	return c.log[i], true
}

// Truth is the canonical form of the movie's current, non-deleted reviews:
// the adapter's normalization of each one's newest event, with a zero
// ingested_at. It is what the pipeline must end up storing.
func (c *Catalog) Truth(movie string) []review.Review {
	var out []review.Review
	for _, e := range c.Current(movie) {
		if e.Deleted {
			continue
		}
		ev, err := c.adapter.Normalize(e.Event, time.Time{})
		if err != nil || ev.Op != review.OpUpsert {
			continue // Apply refuses such events; never reached
		}
		out = append(out, ev.Review)
	}
	return out
}

func clamp(v, n int) int {
	if v < 0 {
		return 0
	}
	if v > n {
		return n
	}
	return v
}

func checkID(id string) error {
	if strings.TrimSpace(id) == "" {
		return fmt.Errorf("%w: review.review_id is required", ErrInvalid)
	}
	return nil
}
