// Package load drives reviewpipe under load and measures it: signed generic
// webhooks sent open-loop (at a set rate, latency counted from the intended
// send time so slow answers cannot hide queueing) or closed-loop (as fast as
// answers come), a read API reader at a fixed rate, and the moment each row
// becomes visible (LISTEN on the sink's commit notifications). Every
// function here is bounded by its context or its duration argument.
package load

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

// Movies is how many distinct movies the generated reviews spread over.
const Movies = 1000

// MovieID is the IMDb-shaped id of movie i (0 <= i < Movies).
func MovieID(i int) string { return fmt.Sprintf("tt%07d", 1000000+i) }

// Body returns a generic provider delivery with k reviews, ids prefix-n*k ..
// prefix-(n*k+k-1): one event when k is 1, else {"events": [...]}.
func Body(prefix string, n, k int, now time.Time) ([]byte, []string) {
	return BodyOver(prefix, n, k, Movies, now)
}

// BodyOver is Body with the reviews spread over movies movies.
func BodyOver(prefix string, n, k, movies int, now time.Time) ([]byte, []string) {
	var b bytes.Buffer
	ids := make([]string, k)
	if k > 1 {
		b.WriteString(`{"events":[`)
	}
	ts := now.UTC().Format(time.RFC3339Nano)
	for j := 0; j < k; j++ {
		seq := n*k + j
		id := prefix + "-" + strconv.Itoa(seq)
		ids[j] = "generic:" + id
		if j > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"review.upserted","data":{"review_id":%q,"version":1,"updated_at":%q,`+
			`"movie":{"imdb_id":%q,"title":"Benchmark Movie %d"},"author":"Bench Reader %d",`+
			`"title":"A review of some length","body":"The pacing drags in the second act, but the ending earns its keep; `+
			`the score carries scenes the script cannot, and the lead gives the part more than it asks for.",`+
			`"rating":{"value":%d,"scale":10},"language":"en","url":"https://example.com/r/%d"}}`,
			id, ts, MovieID(seq%movies), seq%movies, seq%97, 1+seq%10, seq)
	}
	if k > 1 {
		b.WriteString(`]}`)
	}
	return b.Bytes(), ids
}

// Sample is one request's outcome: when it was meant to start (offset from
// the phase start) and how long it took to answer from then.
type Sample struct {
	At      time.Duration
	Latency time.Duration // from the intended send, as an open loop counts it
	Code    int           // 0 on a transport error
	// Late is how long after its intended time the generator sent the
	// request (Reader only): the generator's own wait for a CPU, which
	// Latency includes.
	Late time.Duration
}

// Recorder collects samples. Safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	samples []Sample
}

func (r *Recorder) add(s Sample) {
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
}

// Samples returns a copy of what was recorded.
func (r *Recorder) Samples() []Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Sample(nil), r.samples...)
}

// Summary is the latency distribution and answer codes of some samples.
type Summary struct {
	Count int            `json:"count"`
	OK    int            `json:"ok"`
	Codes map[string]int `json:"codes"`
	P50   float64        `json:"p50_ms"`
	P99   float64        `json:"p99_ms"`
	P999  float64        `json:"p999_ms"`
	Max   float64        `json:"max_ms"`
}

// Summarize computes the percentiles (in milliseconds) over every sample,
// failed ones included: an error answer is an answer the caller waited for.
func Summarize(ss []Sample) Summary {
	s := Summary{Count: len(ss), Codes: map[string]int{}}
	if len(ss) == 0 {
		return s
	}
	lat := make([]float64, len(ss))
	for i, x := range ss {
		lat[i] = float64(x.Latency) / float64(time.Millisecond)
		s.Codes[strconv.Itoa(x.Code)]++
		if x.Code >= 200 && x.Code < 300 {
			s.OK++
		}
	}
	sort.Float64s(lat)
	s.P50, s.P99, s.P999, s.Max = Quantile(lat, .5), Quantile(lat, .99), Quantile(lat, .999), lat[len(lat)-1]
	return s
}

// Quantile of sorted values (nearest rank).
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Sender posts signed deliveries to a receiver. Safe for concurrent use.
type Sender struct {
	Key    []byte  // the generic provider's webhook key
	K      int     // reviews per delivery
	Movies int     // movies the reviews spread over (0: Movies)
	Prefix string  // review id prefix, unique per phase
	Client *Client // to the receiver
	// Sent records, per review id, when its delivery was sent (for
	// freshness); nil to skip.
	Sent     *sync.Map
	Accepted atomic.Int64 // reviews in deliveries answered 2xx
	next     atomic.Int64
}

// send posts delivery number n and returns the status code (0 on error).
func (s *Sender) send(n int) int {
	now := time.Now()
	movies := s.Movies
	if movies <= 0 {
		movies = Movies
	}
	body, ids := BodyOver(s.Prefix, n, s.K, movies, now)
	h := http.Header{"Content-Type": {"application/json"}}
	webhook.SetHeaders(h, s.Key, "bench-"+s.Prefix+"-"+strconv.Itoa(n), now, body)
	if s.Sent != nil {
		for _, id := range ids {
			s.Sent.Store(id, now)
		}
	}
	code, err := s.Client.Do(http.MethodPost, "/webhooks/generic", h, body)
	if err != nil {
		return 0
	}
	if code/100 == 2 {
		s.Accepted.Add(int64(s.K))
	}
	return code
}

// ClosedLoop sends deliveries from workers goroutines, each waiting for its
// answer before the next, for d. It returns the samples.
func (s *Sender) ClosedLoop(ctx context.Context, workers int, d time.Duration) []Sample {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var rec Recorder
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				n := int(s.next.Add(1) - 1)
				t0 := time.Now()
				code := s.send(n)
				rec.add(Sample{At: t0.Sub(start), Latency: time.Since(t0), Code: code})
			}
		})
	}
	wg.Wait()
	return rec.Samples()
}

// SendN sends deliveries 0 to n-1 from workers goroutines, each waiting
// for its answer before the next.
func (s *Sender) SendN(ctx context.Context, workers, n int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(s.next.Add(1) - 1)
				if i >= n {
					return
				}
				s.send(i)
			}
		})
	}
	wg.Wait()
}

// OpenLoop starts deliveries at rate per second for d, each on its own
// goroutine, at most maxInFlight at once; a delivery whose start finds the
// limit reached waits for a slot, and its latency still counts from its
// intended start. It returns the samples.
func (s *Sender) OpenLoop(ctx context.Context, rate float64, d time.Duration, maxInFlight int) []Sample {
	var rec Recorder
	Schedule(ctx, rate, d, maxInFlight, func(intended time.Time, at time.Duration) {
		n := int(s.next.Add(1) - 1)
		code := s.send(n)
		rec.add(Sample{At: at, Latency: time.Since(intended), Code: code})
	})
	return rec.Samples()
}

// Schedule calls f at rate per second for d, open loop, on goroutines (at
// most maxInFlight at once), passing each call's intended start. It returns
// when d has passed and every call has returned.
func Schedule(ctx context.Context, rate float64, d time.Duration, maxInFlight int, f func(intended time.Time, at time.Duration)) {
	if rate <= 0 {
		return
	}
	interval := time.Duration(float64(time.Second) / rate)
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; ; i++ {
		at := time.Duration(i) * interval
		if at >= d || ctx.Err() != nil {
			break
		}
		intended := start.Add(at)
		if wait := time.Until(intended); wait > 0 {
			time.Sleep(wait)
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(intended, at)
		})
	}
	wg.Wait()
}

// Reader asks the read API for the reviews of one of the first movies
// movies at rate per second for d, open loop, and returns the samples,
// each with how late it was sent.
func Reader(ctx context.Context, client *Client, rate float64, movies int, d time.Duration) []Sample {
	var rec Recorder
	var n atomic.Int64
	Schedule(ctx, rate, d, 512, func(intended time.Time, at time.Duration) {
		i := int(n.Add(1)) * 7919 % movies
		late := time.Since(intended)
		code, _ := client.Do(http.MethodGet, "/v1/movies/"+MovieID(i)+"/reviews", nil, nil)
		rec.add(Sample{At: at, Latency: time.Since(intended), Code: code, Late: late})
	})
	return rec.Samples()
}
