package dedupe

// Store holds the entries of one partition's keys. Implementations need not
// be safe for concurrent use: the processor gives each partition its own
// store and touches it from that partition's goroutine only. An on-disk
// store can replace MemStore when keys outgrow memory.
type Store interface {
	// Get returns the key's entry and true, or false when it has none.
	Get(key string) (Entry, bool)
	// Put sets the key's entry.
	Put(key string, e Entry)
	// Delete forgets the key (a changelog record with a null value, as
	// compaction tooling writes to expire old tombstones).
	Delete(key string)
	// Len returns the number of keys.
	Len() int
}

// MemStore is the in-memory Store: a map. Not safe for concurrent use.
type MemStore struct{ m map[string]Entry }

// NewMemStore returns an empty store with room for about hint keys.
func NewMemStore(hint int) *MemStore { return &MemStore{m: make(map[string]Entry, hint)} }

// Get implements Store.
func (s *MemStore) Get(key string) (Entry, bool) {
	e, ok := s.m[key]
	return e, ok
}

// Put implements Store.
func (s *MemStore) Put(key string, e Entry) { s.m[key] = e }

// Delete implements Store.
func (s *MemStore) Delete(key string) { delete(s.m, key) }

// Len implements Store.
func (s *MemStore) Len() int { return len(s.m) }

// StagedEntry is a key's entry staged in an Overlay, not yet committed to
// its base Store.
type StagedEntry struct {
	Key   string
	Entry Entry
}

// Overlay stages changes over a base Store without touching it, so a batch
// can be decided, its outputs written, and only then its state committed:
// a batch that fails to write is dropped with Discard and decided again
// from the same state. Not safe for concurrent use.
type Overlay struct {
	base   Store
	staged map[string]int // key -> index in order
	order  []StagedEntry
}

// NewOverlay returns an empty overlay over base.
func NewOverlay(base Store) *Overlay {
	return &Overlay{base: base, staged: map[string]int{}}
}

// Get implements Store: the staged entry, else the base's.
func (o *Overlay) Get(key string) (Entry, bool) {
	if i, ok := o.staged[key]; ok {
		return o.order[i].Entry, true
	}
	return o.base.Get(key)
}

// Put implements Store by staging the entry.
func (o *Overlay) Put(key string, e Entry) {
	if i, ok := o.staged[key]; ok {
		o.order[i].Entry = e
		return
	}
	o.staged[key] = len(o.order)
	o.order = append(o.order, StagedEntry{Key: key, Entry: e})
}

// Delete is not staged: an overlay only ever puts (Apply never deletes). It
// panics, since a caller that needs it has a bug.
func (o *Overlay) Delete(string) { panic("dedupe: Overlay.Delete is not supported") }

// Len implements Store: the base's keys plus the staged new ones.
func (o *Overlay) Len() int {
	n := o.base.Len()
	for _, c := range o.order {
		if _, ok := o.base.Get(c.Key); !ok {
			n++
		}
	}
	return n
}

// Staged returns the staged entries, one per key, in the order their keys
// were first staged, each with its latest entry. The slice is the overlay's
// own: valid until the next Put, Commit or Discard.
func (o *Overlay) Staged() []StagedEntry { return o.order }

// Commit writes the staged entries to the base and empties the overlay.
func (o *Overlay) Commit() {
	for _, c := range o.order {
		o.base.Put(c.Key, c.Entry)
	}
	o.Discard()
}

// Discard drops the staged entries.
func (o *Overlay) Discard() {
	clear(o.staged)
	o.order = o.order[:0]
}
