package cache

import (
	"fmt"
	"testing"
)

func put(t *testing.T, c *Cache[string], key, value string, scopes ...string) bool {
	t.Helper()
	return c.Put(c.Begin(), key, scopes, value, len(value))
}

func open(max int64) *Cache[string] {
	c := New[string](max)
	c.SetBypass(false)
	return c
}

func TestGetPutAndLRUEvictionWithinBytes(t *testing.T) {
	entry := int64(EntryOverhead + 2 + 100) // key "k0" and a 100-byte value
	c := open(3 * entry)
	val := string(make([]byte, 100))
	for i := range 3 {
		if !put(t, c, fmt.Sprint("k", i), val, "s") {
			t.Fatalf("put k%d refused", i)
		}
	}
	if s := c.Stats(); s.Bytes != 3*entry || s.Entries != 3 || s.Evictions != 0 {
		t.Fatalf("three entries: %+v", s)
	}
	c.Get("k0") // k1 is now the least recently used
	put(t, c, "k3", val)
	if _, ok := c.Get("k1"); ok {
		t.Fatal("k1, least recently used, was not evicted")
	}
	for _, k := range []string{"k0", "k2", "k3"} {
		if _, ok := c.Get(k); !ok {
			t.Fatalf("%s evicted", k)
		}
	}
	if s := c.Stats(); s.Bytes > c.MaxBytes() || s.Evictions != 1 {
		t.Fatalf("after an eviction: %+v", s)
	}
	// A value larger than the bound is not stored and evicts nothing.
	if put(t, c, "big", string(make([]byte, 4*entry))) {
		t.Fatal("a value over the bound was stored")
	}
	if s := c.Stats(); s.Entries != 3 {
		t.Fatalf("after an oversized put: %+v", s)
	}
	for i := range 1000 {
		put(t, c, fmt.Sprint("x", i), string(make([]byte, i%300)))
		if s := c.Stats(); s.Bytes > c.MaxBytes() {
			t.Fatalf("%d bytes held, bound %d", s.Bytes, c.MaxBytes())
		}
	}
}

func TestDisabledHoldsNothing(t *testing.T) {
	c := open(0)
	if put(t, c, "k", "v") {
		t.Fatal("stored with maxBytes 0")
	}
	if _, ok := c.Get("k"); ok || c.Enabled() {
		t.Fatal("a disabled cache hit")
	}
}

// A read begun before an invalidation of its scope does not store its
// value; one begun after does; other scopes are untouched.
func TestFillRaceRefused(t *testing.T) {
	c := open(1 << 20)
	before := c.Begin()
	other := c.Begin()
	c.Invalidate("movie:a")
	if c.Put(before, "a", []string{"movie:a"}, "old", 3) {
		t.Fatal("a read begun before the invalidation was stored")
	}
	if !c.Put(other, "b", []string{"movie:b"}, "b", 1) {
		t.Fatal("another scope's fill was refused")
	}
	if !c.Put(c.Begin(), "a", []string{"movie:a"}, "new", 3) {
		t.Fatal("a read begun after the invalidation was refused")
	}
	if v, _ := c.Get("a"); v != "new" {
		t.Fatalf("a = %q", v)
	}
	c.Invalidate("movie:a")
	if _, ok := c.Get("a"); ok {
		t.Fatal("invalidated entry still served")
	}
	if _, ok := c.Get("b"); !ok {
		t.Fatal("other scope's entry dropped")
	}
	if s := c.Stats(); s.Refused != 1 || s.Invalidated != 1 {
		t.Fatalf("stats %+v", s)
	}
	// Past the bound of remembered invalidations, everything begun
	// before is refused.
	old := c.Begin()
	for i := range 5000 {
		c.Invalidate(fmt.Sprint("movie:", i))
	}
	if c.Put(old, "c", []string{"movie:never-invalidated"}, "c", 1) {
		t.Fatal("a fill begun before the invalidations were forgotten was stored")
	}
}

func TestFlushAndBypass(t *testing.T) {
	c := open(1 << 20)
	tok := c.Begin()
	put(t, c, "a", "1", "s")
	c.Flush()
	if _, ok := c.Get("a"); ok {
		t.Fatal("flushed entry served")
	}
	if c.Put(tok, "b", nil, "2", 1) {
		t.Fatal("a fill begun before the flush was stored")
	}
	c.SetBypass(true)
	if put(t, c, "c", "3") {
		t.Fatal("stored while bypassed")
	}
	c.SetBypass(false)
	if !put(t, c, "c", "3") {
		t.Fatal("refused after the bypass ended")
	}
	if _, ok := New[string](10).Get("x"); ok {
		t.Fatal("a new cache is not bypassed")
	}
}

func TestSwap(t *testing.T) {
	c := open(1 << 20)
	put(t, c, "a", "v1", "s")
	if !c.Swap("a", "v1", "v2", 2) {
		t.Fatal("swap refused")
	}
	if c.Swap("a", "v1", "v3", 2) {
		t.Fatal("swap of a value no longer held")
	}
	c.Invalidate("s")
	if c.Swap("a", "v2", "v3", 2) {
		t.Fatal("swap of an invalidated entry")
	}
	if _, ok := c.Get("a"); ok {
		t.Fatal("swap revived an invalidated entry")
	}
}

// InvalidateHot drops what Invalidate drops and names the entries read
// since their put: not one never read, not one read only before it was
// put again.
func TestInvalidateHot(t *testing.T) {
	c := open(1 << 20)
	put(t, c, "read", "v", "movie:a")
	put(t, c, "unread", "v", "movie:a")
	put(t, c, "reput", "v", "movie:a")
	put(t, c, "elsewhere", "v", "movie:b")
	c.Get("read")
	c.Get("reput")
	put(t, c, "reput", "v2", "movie:a") // a new entry: not read since
	c.Get("elsewhere")
	hot := c.InvalidateHot("movie:a")
	if len(hot) != 1 || hot[0] != "read" {
		t.Fatalf("hot keys %v, want [read]", hot)
	}
	for _, k := range []string{"read", "unread", "reput"} {
		if _, ok := c.Get(k); ok {
			t.Fatalf("%s still held after its scope was invalidated", k)
		}
	}
	if _, ok := c.Get("elsewhere"); !ok {
		t.Fatal("an entry of another scope was dropped")
	}
	// A put begun before the invalidation is refused, as with Invalidate.
	tok := c.Begin()
	c.InvalidateHot("movie:b")
	if c.Put(tok, "late", []string{"movie:b"}, "old", 3) {
		t.Fatal("a fill begun before InvalidateHot was kept")
	}
}
