package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

// loadConfig bounds a webhook load: deliveries per second for a duration,
// over a fixed set of review ids, from a few workers.
type loadConfig struct {
	rate     float64       // deliveries per second offered
	duration time.Duration // how long new deliveries are made
	ids      int           // distinct reviews
	workers  int
	// retryFor: after the load ends, how long an unacknowledged delivery
	// is still retried (a provider retries for minutes).
	retryFor time.Duration
}

// delivery is one signed generic webhook of one or more changes.
type delivery struct {
	id      string
	body    []byte
	changes []change
}

// webhookLoad makes deliveries from a seeded generator and sends each until
// it is acknowledged (2xx), as a provider does, recording the outcome in
// the model.
type webhookLoad struct {
	cfg      loadConfig
	receiver func() string
	m        *model
	nonce    string

	genMu    sync.Mutex
	rng      *rand.Rand
	versions []int64
	alive    []bool
	made     int

	statMu   sync.Mutex
	codes    map[int]int
	netErrs  int
	attempts int
	retried  int // deliveries that needed more than one attempt
	acked    int
	given    int // deliveries never acknowledged
	dropped  int // ticks not offered: every worker busy and a second's worth waiting
	firstBad time.Time
	lastBad  time.Time
	started  time.Time
	// perSecond counts answers by second since the start and by code (0:
	// a network error).
	perSecond map[int]map[int]int
}

func newWebhookLoad(cfg loadConfig, seed uint64, receiver func() string, m *model) *webhookLoad {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &webhookLoad{cfg: cfg, receiver: receiver, m: m, rng: rng,
		nonce:    fmt.Sprintf("%06x", rng.Uint32()&0xffffff),
		versions: make([]int64, cfg.ids), alive: make([]bool, cfg.ids), codes: map[int]int{}, perSecond: map[int]map[int]int{}}
}

// next makes the next delivery: 1 to 3 changes of distinct reviews; each
// change is the review's next version, a delete with probability 0.15
// when it exists; now and then the delivery repeats an older version
// (a stale, out-of-order change the pipeline must drop).
func (l *webhookLoad) next() delivery {
	l.genMu.Lock()
	defer l.genMu.Unlock()
	l.made++
	n := 1
	if r := l.rng.Float64(); r < 0.15 {
		n = 3
	} else if r < 0.3 {
		n = 2
	}
	d := delivery{id: fmt.Sprintf("faults-%s-%d", l.nonce, l.made)}
	used := map[int]bool{}
	var events []json.RawMessage
	for len(d.changes) < n {
		i := l.rng.IntN(l.cfg.ids)
		if used[i] {
			continue
		}
		used[i] = true
		rid := fmt.Sprintf("f%s-%d", l.nonce, i)
		c := change{id: "generic:" + rid}
		if l.versions[i] > 2 && l.rng.Float64() < 0.05 {
			// A late repeat of an older version, with that version's
			// content (or an upsert where the version was a delete,
			// which the delete beats).
			c.version = l.versions[i] - 1 - l.rng.Int64N(2)
			c.title = fmt.Sprintf("%s v%d", rid, c.version)
		} else {
			l.versions[i]++
			c.version = l.versions[i]
			if l.alive[i] && l.rng.Float64() < 0.15 {
				c.deleted = true
				l.alive[i] = false
			} else {
				c.title = fmt.Sprintf("%s v%d", rid, c.version)
				l.alive[i] = true
			}
		}
		events = append(events, genericEvent(rid, i, c))
		d.changes = append(d.changes, c)
	}
	if len(events) == 1 {
		d.body = events[0]
	} else {
		d.body, _ = json.Marshal(map[string]any{"events": events})
	}
	return d
}

func genericEvent(rid string, i int, c change) json.RawMessage {
	updated := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(c.version) * time.Minute).Format(time.RFC3339)
	movie := map[string]any{"imdb_id": fmt.Sprintf("tt%07d", 1000000+i%50), "title": "Fault movie"}
	var ev map[string]any
	if c.deleted {
		ev = map[string]any{"type": "review.deleted", "data": map[string]any{
			"review_id": rid, "version": c.version, "updated_at": updated, "movie": movie}}
	} else {
		ev = map[string]any{"type": "review.upserted", "data": map[string]any{
			"review_id": rid, "version": c.version, "updated_at": updated, "movie": movie,
			"author": "faults", "title": c.title, "body": "fault suite", "rating": map[string]any{"value": 1 + i%10, "scale": 10}}}
	}
	b, _ := json.Marshal(ev)
	return b
}

// run offers deliveries at cfg.rate for cfg.duration and returns when every
// delivery is acknowledged or has run out of retries.
func (l *webhookLoad) run(ctx context.Context) {
	// Up to a second of deliveries wait for a free worker; past that, ticks
	// are dropped (counted): the load stays bounded while the pipeline is
	// refusing and every worker is retrying.
	tokens := make(chan struct{}, max(1, int(l.cfg.rate)))
	go func() {
		defer close(tokens)
		tick := time.NewTicker(time.Duration(float64(time.Second) / l.cfg.rate))
		defer tick.Stop()
		end := time.After(l.cfg.duration)
		for {
			select {
			case <-ctx.Done():
				return
			case <-end:
				return
			case <-tick.C:
				select {
				case tokens <- struct{}{}:
				default:
					l.statMu.Lock()
					l.dropped++
					l.statMu.Unlock()
				}
			}
		}
	}()
	l.statMu.Lock()
	l.started = time.Now()
	l.statMu.Unlock()
	retryUntil := time.Now().Add(l.cfg.duration + l.cfg.retryFor)
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for w := 0; w < l.cfg.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tokens {
				l.send(ctx, client, l.next(), retryUntil)
			}
		}()
	}
	wg.Wait()
}

// send posts d until a 2xx or retryUntil, with backoff (100ms doubling to 2s).
func (l *webhookLoad) send(ctx context.Context, client *http.Client, d delivery, retryUntil time.Time) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		code, err := l.post(ctx, client, d)
		l.statMu.Lock()
		l.attempts++
		sec := int(time.Since(l.started) / time.Second)
		if l.perSecond[sec] == nil {
			l.perSecond[sec] = map[int]int{}
		}
		if err != nil {
			l.netErrs++
			l.perSecond[sec][0]++
		} else {
			l.codes[code]++
			l.perSecond[sec][code]++
		}
		ok := err == nil && code/100 == 2
		if !ok {
			now := time.Now()
			if l.firstBad.IsZero() {
				l.firstBad = now
			}
			l.lastBad = now
		}
		if ok {
			l.acked++
			if attempt > 1 {
				l.retried++
			}
		}
		l.statMu.Unlock()
		if ok {
			l.m.ack(d.changes...)
			return
		}
		if ctx.Err() != nil || time.Now().After(retryUntil) {
			l.statMu.Lock()
			l.given++
			l.statMu.Unlock()
			l.m.unsure(d.changes...)
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (l *webhookLoad) post(ctx context.Context, client *http.Client, d delivery) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.receiver()+"/webhooks/generic", bytes.NewReader(d.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	webhook.SetHeaders(req.Header, testSecret, d.id, time.Now(), d.body)
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

// summary is one line of the load's figures.
func (l *webhookLoad) summary() string {
	l.statMu.Lock()
	defer l.statMu.Unlock()
	l.genMu.Lock()
	made := l.made
	l.genMu.Unlock()
	var codes []string
	keys := make([]int, 0, len(l.codes))
	for c := range l.codes {
		keys = append(keys, c)
	}
	sort.Ints(keys)
	for _, c := range keys {
		codes = append(codes, fmt.Sprintf("%d×%d", c, l.codes[c]))
	}
	s := fmt.Sprintf("deliveries %d (acknowledged %d, after retries %d, never %d), attempts %d, answers [%s], network errors %d, ticks dropped %d",
		made, l.acked, l.retried, l.given, l.attempts, strings.Join(codes, " "), l.netErrs, l.dropped)
	if !l.firstBad.IsZero() {
		s += fmt.Sprintf(", failed attempts between %s and %s", l.firstBad.Format("15:04:05.000"), l.lastBad.Format("15:04:05.000"))
	}
	return s
}

// timeline lists, per second since the load's start that saw a failed
// attempt, the answers of that second ("net" for network errors).
func (l *webhookLoad) timeline() string {
	l.statMu.Lock()
	defer l.statMu.Unlock()
	secs := make([]int, 0, len(l.perSecond))
	for s, byCode := range l.perSecond {
		for c := range byCode {
			if c/100 != 2 {
				secs = append(secs, s)
				break
			}
		}
	}
	sort.Ints(secs)
	var out []string
	for _, s := range secs {
		codes := make([]int, 0, len(l.perSecond[s]))
		for c := range l.perSecond[s] {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		var parts []string
		for _, c := range codes {
			name := strconv.Itoa(c)
			if c == 0 {
				name = "net"
			}
			parts = append(parts, fmt.Sprintf("%s×%d", name, l.perSecond[s][c]))
		}
		out = append(out, fmt.Sprintf("+%ds %s", s, strings.Join(parts, " ")))
	}
	return strings.Join(out, "; ")
}
