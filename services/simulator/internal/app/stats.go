package app

import (
	"sync"
	"time"
)

// statsWindow is how many whole seconds of per-second counts are kept.
const statsWindow = 60

// apiCounters are one provider's polling API totals.
type apiCounters struct {
	Requests       int64 `json:"requests_total"`
	RateLimited    int64 `json:"rate_limited_total"`
	ErrorsInjected int64 `json:"errors_injected_total"`
	Unavailable    int64 `json:"unavailable_total"`
	Unauthorized   int64 `json:"unauthorized_total"`
}

// SecondCount is the requests one provider saw in one whole second.
type SecondCount struct {
	Second      int64 `json:"second"`
	Requests    int64 `json:"requests"`
	RateLimited int64 `json:"rate_limited"`
}

// apiStats counts a provider's requests in total and per second over the
// last statsWindow seconds. Safe for concurrent use.
type apiStats struct {
	now func() time.Time

	mu     sync.Mutex
	totals apiCounters
	ring   [statsWindow]SecondCount
}

func newAPIStats(now func() time.Time) *apiStats { return &apiStats{now: now} }

// slot returns the ring entry of the current second. Called with mu held.
func (s *apiStats) slot() *SecondCount {
	sec := s.now().Unix()
	e := &s.ring[sec%statsWindow]
	if e.Second != sec {
		*e = SecondCount{Second: sec}
	}
	return e
}

func (s *apiStats) request() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.totals.Requests++
	s.slot().Requests++
}

func (s *apiStats) rateLimited() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.totals.RateLimited++
	s.slot().RateLimited++
}

func (s *apiStats) count(f func(c *apiCounters)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.totals)
}

// snapshot returns the totals and the seconds of the window that saw
// requests, oldest first.
func (s *apiStats) snapshot() (apiCounters, []SecondCount) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().Unix()
	out := []SecondCount{}
	for sec := now - statsWindow + 1; sec <= now; sec++ {
		if e := s.ring[((sec%statsWindow)+statsWindow)%statsWindow]; e.Second == sec && e.Requests > 0 {
			out = append(out, e)
		}
	}
	return s.totals, out
}
