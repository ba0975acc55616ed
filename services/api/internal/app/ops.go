package app

import (
	"context"
	"math"
	"net/http"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// OpsProvider is one provider in the operator view.
type OpsProvider struct {
	Name          string     `json:"name"`
	Status        string     `json:"status"`
	LastSuccessAt *time.Time `json:"last_success_at"`
	LastAttemptAt *time.Time `json:"last_attempt_at"`
	// LastError is the poller's last error; its text only behind
	// OPS_TOKEN (else hiddenDetail).
	LastError    string `json:"last_error"`
	BreakerState string `json:"breaker_state"`
	// FreshnessSeconds is the age of the last successful sync (null when
	// there was none).
	FreshnessSeconds *float64 `json:"freshness_seconds"`
	ObjectiveSeconds float64  `json:"objective_seconds"`
	WithinObjective  bool     `json:"within_objective"`
	// DeadLetters counts this provider's records on reviews.dlq.v1 (see
	// OpsDeadLetters.ByProvider).
	DeadLetters int64 `json:"dead_letters"`
}

// OpsPartition is one partition of a consumer's lag.
type OpsPartition struct {
	Partition  int   `json:"partition"`
	NextOffset int64 `json:"next_offset"`
	EndOffset  int64 `json:"end_offset"`
	Lag        int64 `json:"lag"`
}

// OpsConsumer is a consumer's lag: its offsets stored in PostgreSQL
// against the topic's end offsets in Kafka.
type OpsConsumer struct {
	Group      string         `json:"group"`
	Topic      string         `json:"topic"`
	Lag        *int64         `json:"lag"`
	UpdatedAt  *time.Time     `json:"updated_at"`
	Partitions []OpsPartition `json:"partitions"`
}

// OpsDeadLetters counts dead letters: records held by reviews.dlq.v1
// (end minus start offsets of its partitions), those redriven, and the
// records this api has read from the topic by provider and by reason (from
// each partition's first retained record on, so they lag Total while it
// catches up).
type OpsDeadLetters struct {
	Total      *int64           `json:"total"`
	Redriven   int64            `json:"redriven"`
	ByProvider map[string]int64 `json:"by_provider"`
	ByReason   map[string]int64 `json:"by_reason"`
}

// Ops is the answer of GET /v1/ops/providers.
type Ops struct {
	GeneratedAt time.Time      `json:"generated_at"`
	Stale       bool           `json:"stale"`
	Providers   []OpsProvider  `json:"providers"`
	Consumers   []OpsConsumer  `json:"consumers"`
	DeadLetters OpsDeadLetters `json:"dead_letters"`
	// KafkaError says why lag and dead letters are unknown, when they are
	// (the error's text only behind OPS_TOKEN).
	KafkaError string `json:"kafka_error,omitempty"`
}

func (a *API) ops(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// Whole seconds, so that revalidations within a second match.
	now := a.now().Truncate(time.Second)
	views, err := a.providersAt(ctx, now)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := Ops{GeneratedAt: now.UTC(), Stale: anyStale(views), Providers: []OpsProvider{}}
	out.DeadLetters.ByProvider, out.DeadLetters.ByReason = a.dead.counts()
	for _, v := range views {
		p := OpsProvider{Name: v.Name, Status: v.Status, LastSuccessAt: v.LastSuccessAt, BreakerState: "unknown",
			ObjectiveSeconds: v.Objective.Seconds(), WithinObjective: !v.Stale, DeadLetters: out.DeadLetters.ByProvider[v.Name]}
		if v.Health != nil {
			p.LastAttemptAt, p.LastError, p.BreakerState = v.Health.LastAttemptAt, a.internal(v.Health.LastError), v.Health.BreakerState
			if p.LastAttemptAt != nil {
				t := p.LastAttemptAt.UTC()
				p.LastAttemptAt = &t
			}
		}
		if v.Age != nil {
			s := math.Round(v.Age.Seconds())
			p.FreshnessSeconds = &s
		}
		out.Providers = append(out.Providers, p)
	}
	group, topic := a.cfg.Names.Group(kafkax.GroupSink), a.cfg.Names.Topic(kafkax.TopicNormalized)
	stored, updated, err := a.store.Offsets(ctx, group, topic)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if out.DeadLetters.Redriven, err = a.store.Redriven(ctx); err != nil {
		a.fail(w, r, err)
		return
	}
	sink := OpsConsumer{Group: group, Topic: topic, Partitions: []OpsPartition{}}
	if !updated.IsZero() {
		sink.UpdatedAt = &updated
	}
	dlqTopic := a.cfg.Names.Topic(kafkax.TopicDLQ)
	offs, kerr := a.kafka.get(ctx, []string{topic, dlqTopic})
	if kerr != nil {
		a.log.Warn("operator view: Kafka offsets unknown", zap.Error(kerr))
		out.KafkaError = a.internal("Kafka did not answer: " + kerr.Error())
	} else {
		var lag int64
		for p, o := range offs[topic] {
			next, ok := stored[p]
			if !ok {
				next = o.First
			}
			l := max(0, o.End-next)
			lag += l
			sink.Partitions = append(sink.Partitions, OpsPartition{Partition: p, NextOffset: next, EndOffset: o.End, Lag: l})
		}
		sort.Slice(sink.Partitions, func(i, j int) bool { return sink.Partitions[i].Partition < sink.Partitions[j].Partition })
		sink.Lag = &lag
		var dead int64
		for _, o := range offs[dlqTopic] {
			dead += o.End - o.First
		}
		out.DeadLetters.Total = &dead
	}
	out.Consumers = []OpsConsumer{sink}
	cache := "no-cache"
	if a.cfg.OpsToken != "" {
		cache = "private, no-cache"
	}
	a.writeJSON(w, r, out, cache)
}

// hiddenDetail replaces internal error text in an operator view that is
// public (no OPS_TOKEN): it can name addresses and credentials.
const hiddenDetail = "an error (set OPS_TOKEN to see its text here; the service's log has it)"

// internal is msg when the operator view is behind the token, else
// hiddenDetail (or "" for no error).
func (a *API) internal(msg string) string {
	if msg == "" || a.cfg.OpsToken != "" {
		return msg
	}
	return hiddenDetail
}

// kafkaOffsets reads topics' first and end offsets, cached for ttl so a
// busy operator page does not query Kafka on every request. Safe for
// concurrent use.
type kafkaOffsets struct {
	brokers []string
	ttl     time.Duration
	mu      sync.Mutex
	at      time.Time
	key     string
	cached  map[string]map[int]kafkax.Span
}

func (k *kafkaOffsets) get(ctx context.Context, topics []string) (map[string]map[int]kafkax.Span, error) {
	key := ""
	for _, t := range topics {
		key += t + ","
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key == key && time.Since(k.at) < k.ttl {
		return k.cached, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out, err := kafkax.Offsets(ctx, k.brokers, topics...)
	if err != nil {
		return nil, err
	}
	k.at, k.key, k.cached = time.Now(), key, out
	return out, nil
}
