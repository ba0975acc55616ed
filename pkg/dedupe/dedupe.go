// Package dedupe is the keyed-state decision logic of reviewpipe: given what
// is known about a review key (its last applied version, content hash and
// whether it is deleted) and an incoming change, it decides whether the
// change is new, a newer update, an exact duplicate, a stale older version or
// a conflicting variant of the same version, and which one wins.
//
// The processor keeps one Store per input partition and writes every change
// of it to its changelog; `reviewctl reconcile` replays the raw log through
// the same Apply to re-derive the expected state. The package does no I/O:
// it is pure and deterministic, so both always agree.
//
// The winner per key is the greatest Entry in the total order of Compare:
// higher version first, then a delete over an upsert of the same version,
// then the greater content hash. Whatever the arrival order and however often
// each change arrives, Apply emits per key a strictly increasing sequence
// that ends with that greatest entry.
//
// # Crashes between writes
//
// A stage that keeps this state in a changelog must write the changelog
// before the outputs, then commit its input offset. A crash between the two
// leaves the state ahead of the outputs; Entry.Offset tells which: entries
// set at or after the committed offset may not have been sent. When the
// record that set such an entry comes again, Apply answers Resend and the
// change is sent again. Writing outputs first instead would, after a crash,
// emit a batch's older versions again after its newer ones.
package dedupe

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// HashSize is the size of a content hash: review.ContentHash is the hex of
// 16 bytes.
const HashSize = 16

// Entry is what the state keeps per review key. Its zero value is not a
// valid entry (versions start at 1).
type Entry struct {
	// Version is the provider's version of the last applied change.
	Version int64
	// Hash is the content hash of the last applied change
	// (review.ContentHash, decoded from hex).
	Hash [HashSize]byte
	// Deleted marks a tombstone: the review was deleted at Version. The
	// entry stays, so an older or equal upsert cannot bring it back.
	Deleted bool
	// Offset is the input offset of the record that set the entry (in
	// the processor, of reviews.raw.v1 in the entry's partition), or -1
	// when unknown. It takes no part in Compare.
	Offset int64
}

// EntryOf returns the entry of a normalized event read at input offset
// offset (-1 when there is none).
func EntryOf(ev review.Event, offset int64) Entry {
	return Entry{
		Version: ev.Review.Version,
		Hash:    HashOf(review.ContentHash(ev.Op, ev.Review)),
		Deleted: ev.Op == review.OpDelete,
		Offset:  offset,
	}
}

// SameChange reports whether e and o are the same change: equal version,
// content hash and deletion (offsets may differ).
func (e Entry) SameChange(o Entry) bool {
	return e.Version == o.Version && e.Hash == o.Hash && e.Deleted == o.Deleted
}

// HashOf decodes a hex content hash (review.ContentHash). A string that is
// not 16 bytes of hex is hashed instead, so any string gives a stable value.
func HashOf(contentHash string) [HashSize]byte {
	var h [HashSize]byte
	if len(contentHash) == 2*HashSize {
		if _, err := hex.Decode(h[:], []byte(contentHash)); err == nil {
			return h
		}
	}
	sum := sha256.Sum256([]byte(contentHash))
	copy(h[:], sum[:])
	return h
}

// HashString is the hex form of e.Hash, as review.ContentHash returns it
// and the serving store keeps it.
func (e Entry) HashString() string { return hex.EncodeToString(e.Hash[:]) }

// Compare orders changes totally: by Version, then a delete above an
// upsert, then by Hash (bytewise, which is the order of the hex strings). It
// returns -1, 0 or +1, and 0 only for the same change (Offset is ignored).
func (e Entry) Compare(o Entry) int {
	switch {
	case e.Version < o.Version:
		return -1
	case e.Version > o.Version:
		return 1
	case e.Deleted != o.Deleted:
		if e.Deleted {
			return 1
		}
		return -1
	}
	return bytes.Compare(e.Hash[:], o.Hash[:])
}

// Decision is what Decide makes of an incoming change.
type Decision uint8

// The decisions. New, Update and ConflictWon change the state and are
// emitted downstream; Resend is emitted without changing it; the others
// are dropped.
const (
	// New: the key has no state yet.
	New Decision = iota + 1
	// Update: the change has a higher version than the state.
	Update
	// Duplicate: the same version and the same content as the state.
	Duplicate
	// Stale: a lower version than the state (for a tombstone too: an
	// older upsert does not revive a deleted review).
	Stale
	// ConflictWon: the same version as the state with different content,
	// and the change wins by Compare (a delete beats an upsert, else the
	// greater hash).
	ConflictWon
	// ConflictLost: the same version with different content, and the
	// state wins by Compare.
	ConflictLost
	// Resend: the state's own change, set by this very input record at or
	// after the confirmed offset, so its output may never have been
	// written (a crash or failed write between the changelog and the
	// outputs). It is sent again; the state does not change.
	Resend
)

// Decisions lists every decision, for metrics that pre-declare labels.
var Decisions = []Decision{New, Update, Duplicate, Stale, ConflictWon, ConflictLost, Resend}

var decisionNames = [...]string{"invalid", "new", "update", "duplicate", "stale", "conflict_won", "conflict_lost", "resend"}

// String returns the decision's metric label ("new", "update", "duplicate",
// "stale", "conflict_won", "conflict_lost", "resend").
func (d Decision) String() string {
	if int(d) < len(decisionNames) {
		return decisionNames[d]
	}
	return fmt.Sprintf("decision(%d)", d)
}

// Emit reports whether the change is sent on.
func (d Decision) Emit() bool { return d.Changes() || d == Resend }

// Changes reports whether the change replaces the key's entry.
func (d Decision) Changes() bool { return d == New || d == Update || d == ConflictWon }

// Conflict reports whether the change had the state's version but other
// content.
func (d Decision) Conflict() bool { return d == ConflictWon || d == ConflictLost }

// Decide returns what to do with the incoming change in, given the key's
// current entry cur (seen is false when the key has no state). confirmed is
// the input offset below which every emitted change is known to be written
// downstream (the committed offset; anything at or below -1 when none is):
// the record that set cur, at cur.Offset >= confirmed, is resent. A replay
// that reads each offset once, as reconciliation does, may pass any value.
func Decide(cur Entry, seen bool, in Entry, confirmed int64) Decision {
	switch {
	case !seen:
		return New
	case in.Version > cur.Version:
		return Update
	case in.Version < cur.Version:
		return Stale
	case in.SameChange(cur):
		if in.Offset >= 0 && in.Offset == cur.Offset && in.Offset >= confirmed {
			return Resend
		}
		return Duplicate
	case in.Compare(cur) > 0:
		return ConflictWon
	default:
		return ConflictLost
	}
}

// Apply decides the change in for key against s (see Decide) and, when the
// decision changes the state, stores in as the key's entry. It returns the
// decision.
func Apply(s Store, key string, in Entry, confirmed int64) Decision {
	cur, seen := s.Get(key)
	d := Decide(cur, seen, in, confirmed)
	if d.Changes() {
		s.Put(key, in)
	}
	return d
}

// wireEntry is the changelog encoding of an Entry.
type wireEntry struct {
	Version     int64  `json:"version"`
	ContentHash string `json:"content_hash"`
	Deleted     bool   `json:"deleted"`
	Offset      *int64 `json:"offset,omitempty"`
}

// MarshalJSON encodes e as the processor's changelog value:
// {"version":3,"content_hash":"<32 hex>","deleted":false,"offset":42}
// (offset omitted when unknown).
func (e Entry) MarshalJSON() ([]byte, error) {
	w := wireEntry{Version: e.Version, ContentHash: e.HashString(), Deleted: e.Deleted}
	if e.Offset >= 0 {
		w.Offset = &e.Offset
	}
	return jsonx.Marshal(w)
}

// UnmarshalJSON decodes a changelog value. It fails on a version below 1 or
// a hash that is not 32 hex characters; a missing offset is -1.
func (e *Entry) UnmarshalJSON(b []byte) error {
	var w wireEntry
	if err := jsonx.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("state entry: %w", err)
	}
	if w.Version < 1 {
		return fmt.Errorf("state entry: version %d is below 1", w.Version)
	}
	var h [HashSize]byte
	if len(w.ContentHash) != 2*HashSize {
		return fmt.Errorf("state entry: content_hash %q is not %d hex characters", w.ContentHash, 2*HashSize)
	}
	if _, err := hex.Decode(h[:], []byte(w.ContentHash)); err != nil {
		return fmt.Errorf("state entry: content_hash %q: %w", w.ContentHash, err)
	}
	*e = Entry{Version: w.Version, Hash: h, Deleted: w.Deleted, Offset: -1}
	if w.Offset != nil && *w.Offset >= 0 {
		e.Offset = *w.Offset
	}
	return nil
}
