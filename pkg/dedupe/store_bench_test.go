package dedupe

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkMemStoreBytesPerKey measures the heap the in-memory store holds
// per key, key strings included ("generic:r-0000123456", 20 bytes, as the
// generic provider's ids look), and reports it as bytes/key.
func BenchmarkMemStoreBytesPerKey(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var perKey float64
			for b.Loop() {
				perKey = bytesPerKey(n)
			}
			b.ReportMetric(perKey, "bytes/key")
		})
	}
}

func bytesPerKey(n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := NewMemStore(0)
	var e Entry
	for i := range n {
		e.Version = int64(i%7 + 1)
		e.Hash[0], e.Hash[1] = byte(i), byte(i>>8)
		s.Put(fmt.Sprintf("generic:r-%010d", i), e)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// BenchmarkApply measures one decision against a store of 100 000 keys.
func BenchmarkApply(b *testing.B) {
	s := NewMemStore(100_000)
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("generic:r-%010d", i)
		s.Put(keys[i], Entry{Version: 1, Offset: -1})
	}
	i := 0
	for b.Loop() {
		Apply(s, keys[i%len(keys)], Entry{Version: int64(i/len(keys) + 2), Offset: int64(i)}, 0)
		i++
	}
}
