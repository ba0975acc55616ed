// Package cache keeps values (the api's encoded answers) in memory, bounded
// by bytes with least-recently-used eviction, and drops them by scope when
// the store announces a change. It guards against the fill race: a value
// read from the store before a change was announced is not stored after the
// announcement.
//
// The protocol of a miss: Begin before reading the store, then Put with
// the token. Put stores the value only if none of its scopes was
// invalidated since Begin, the cache was not flushed meanwhile, and it is
// not bypassed. Invalidate(scope) drops every value in scope and refuses
// the puts of reads that began before it; Flush drops everything and
// refuses every put begun before it.
//
// A Cache is safe for concurrent use. Its methods never block on I/O; each
// holds one mutex for a few map operations.
package cache

import (
	"sync"
	"sync/atomic"
)

// EntryOverhead is what each entry is charged beside its value's size and
// its key: the entry itself, its map slots and its scope index entries,
// rounded up.
const EntryOverhead = 256

// Token is what Begin hands out: the point a store read began at.
type Token struct {
	seq uint64
	ok  bool
}

// Stats are the cache's counters and levels.
type Stats struct {
	Bytes, Entries int64
	// Evictions counts entries dropped to stay within the byte bound.
	Evictions uint64
	// Invalidated counts entries dropped by Invalidate or Flush.
	Invalidated uint64
	// Refused counts puts refused because a scope was invalidated, or the
	// cache flushed or bypassed, after their Begin.
	Refused uint64
	// Flushes counts calls of Flush.
	Flushes uint64
}

type entry[V comparable] struct {
	key        string
	value      V
	size       int64
	scopes     []string
	hit        bool // a Get returned it since its Put
	prev, next *entry[V]
}

// Cache maps string keys to values of type V. The zero value is not
// usable; call New.
type Cache[V comparable] struct {
	max int64

	mu      sync.Mutex
	bytes   int64
	entries map[string]*entry[V]
	index   map[string]map[*entry[V]]struct{}
	// head is the most recently used entry, tail the least.
	head, tail *entry[V]
	// seq moves on every invalidation and flush. inval holds the seq of
	// each scope's last invalidation; a scope not in it was last
	// invalidated at or before floor.
	seq    uint64
	floor  uint64
	inval  map[string]uint64
	bypass bool

	evictions, invalidated, refused, flushes atomic.Uint64
	nbytes, nentries                         atomic.Int64
}

// New returns a cache holding at most maxBytes (values' sizes, keys and
// EntryOverhead per entry). With maxBytes <= 0 it holds nothing: Get always
// misses and Put stores nothing. A new cache is bypassed (see SetBypass)
// until SetBypass(false).
func New[V comparable](maxBytes int64) *Cache[V] {
	return &Cache[V]{max: maxBytes, entries: map[string]*entry[V]{}, index: map[string]map[*entry[V]]struct{}{},
		inval: map[string]uint64{}, bypass: true}
}

// Enabled reports whether the cache can hold anything (maxBytes > 0).
func (c *Cache[V]) Enabled() bool { return c != nil && c.max > 0 }

// Get returns key's value and marks it recently used. It misses while the
// cache is bypassed.
func (c *Cache[V]) Get(key string) (V, bool) {
	var zero V
	if !c.Enabled() {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil || c.bypass {
		return zero, false
	}
	c.unlink(e)
	c.pushFront(e)
	e.hit = true
	return e.value, true
}

// Begin marks the start of a store read whose result may be Put.
func (c *Cache[V]) Begin() Token {
	if !c.Enabled() {
		return Token{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return Token{seq: c.seq, ok: !c.bypass}
}

// Put stores value under key, charged size bytes (plus the key and
// EntryOverhead), dropped when any of scopes is invalidated. It stores
// nothing, and reports false, when one of scopes was invalidated or the
// cache flushed or bypassed since t's Begin, or the entry alone is larger
// than the bound. Older entries are evicted to make room.
func (c *Cache[V]) Put(t Token, key string, scopes []string, value V, size int) bool {
	if !c.Enabled() || !t.ok {
		return false
	}
	total := int64(size) + int64(len(key)) + EntryOverhead
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bypass || c.floor > t.seq {
		c.refused.Add(1)
		return false
	}
	for _, s := range scopes {
		if c.inval[s] > t.seq {
			c.refused.Add(1)
			return false
		}
	}
	if total > c.max {
		return false
	}
	if old := c.entries[key]; old != nil {
		c.remove(old)
	}
	e := &entry[V]{key: key, value: value, size: total, scopes: scopes}
	c.entries[key] = e
	for _, s := range scopes {
		set := c.index[s]
		if set == nil {
			set = map[*entry[V]]struct{}{}
			c.index[s] = set
		}
		set[e] = struct{}{}
	}
	c.pushFront(e)
	c.bytes += total
	c.evict()
	c.publish()
	return true
}

// Swap replaces key's value by value, charged size, if the value held is
// still old (it was neither replaced nor dropped since it was read), and
// reports whether it did. It keeps the entry's scopes and recency.
func (c *Cache[V]) Swap(key string, old, value V, size int) bool {
	if !c.Enabled() {
		return false
	}
	total := int64(size) + int64(len(key)) + EntryOverhead
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil || e.value != old || c.bypass {
		return false
	}
	if total > c.max {
		c.remove(e)
		c.publish()
		return false
	}
	c.bytes += total - e.size
	e.value, e.size = value, total
	c.evict()
	c.publish()
	return true
}

// Invalidate drops the entries of each scope and refuses the puts, into
// those scopes, of reads that began before it.
func (c *Cache[V]) Invalidate(scopes ...string) {
	c.invalidate(scopes, nil)
}

// InvalidateHot is Invalidate, and returns the keys of the dropped entries
// that a Get returned since they were put: the answers being read, worth
// reading again before the next reader asks.
func (c *Cache[V]) InvalidateHot(scopes ...string) []string {
	var hot []string
	c.invalidate(scopes, &hot)
	return hot
}

func (c *Cache[V]) invalidate(scopes []string, hot *[]string) {
	if !c.Enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	for _, s := range scopes {
		c.inval[s] = c.seq
		for e := range c.index[s] {
			if hot != nil && e.hit {
				*hot = append(*hot, e.key)
			}
			c.remove(e)
			c.invalidated.Add(1)
		}
	}
	// inval only has to outlive the reads in flight: past a bound, forget
	// it and refuse every put begun before now instead.
	if len(c.inval) > max(4096, 2*len(c.entries)) {
		c.floor = c.seq
		clear(c.inval)
	}
	c.publish()
}

// Flush drops every entry and refuses every put begun before it.
func (c *Cache[V]) Flush() {
	if !c.Enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flush()
}

func (c *Cache[V]) flush() {
	c.seq++
	c.floor = c.seq
	c.flushes.Add(1)
	c.invalidated.Add(uint64(len(c.entries)))
	clear(c.inval)
	clear(c.entries)
	clear(c.index)
	c.head, c.tail, c.bytes = nil, nil, 0
	c.publish()
}

// SetBypass flushes the cache and, while on is true, makes every Get miss
// and every Put refused: for while the change notifications that
// invalidate it may be missed.
func (c *Cache[V]) SetBypass(on bool) {
	if !c.Enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flush()
	c.bypass = on
}

// Stats returns the counters and levels.
func (c *Cache[V]) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{Bytes: c.nbytes.Load(), Entries: c.nentries.Load(), Evictions: c.evictions.Load(),
		Invalidated: c.invalidated.Load(), Refused: c.refused.Load(), Flushes: c.flushes.Load()}
}

// MaxBytes is the bound the cache was made with.
func (c *Cache[V]) MaxBytes() int64 {
	if c == nil {
		return 0
	}
	return c.max
}

func (c *Cache[V]) evict() {
	for c.bytes > c.max && c.tail != nil {
		c.remove(c.tail)
		c.evictions.Add(1)
	}
}

func (c *Cache[V]) remove(e *entry[V]) {
	c.unlink(e)
	delete(c.entries, e.key)
	for _, s := range e.scopes {
		if set := c.index[s]; set != nil {
			delete(set, e)
			if len(set) == 0 {
				delete(c.index, s)
			}
		}
	}
	c.bytes -= e.size
}

func (c *Cache[V]) publish() {
	c.nbytes.Store(c.bytes)
	c.nentries.Store(int64(len(c.entries)))
}

func (c *Cache[V]) unlink(e *entry[V]) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if c.head == e {
		c.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if c.tail == e {
		c.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (c *Cache[V]) pushFront(e *entry[V]) {
	e.next = c.head
	if c.head != nil {
		c.head.prev = e
	}
	c.head = e
	if c.tail == nil {
		c.tail = e
	}
}
