package app

import (
	"context"
	"encoding/json"
	"maps"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// deadLetters counts the records of reviews.dlq.v1 by provider and reason
// for the operator view. Safe for concurrent use.
type deadLetters struct {
	mu         sync.Mutex
	byProvider map[string]int64
	byReason   map[string]int64
}

// unknownProvider names dead letters whose stage could not tell the
// provider (or that are not dead-letter JSON at all).
const unknownProvider = "unknown"

func (d *deadLetters) add(value []byte) {
	var dl struct {
		Provider string `json:"provider"`
		Reason   string `json:"reason"`
	}
	if err := json.Unmarshal(value, &dl); err != nil {
		dl.Provider, dl.Reason = "", ""
	}
	if dl.Provider == "" {
		dl.Provider = unknownProvider
	}
	if dl.Reason == "" {
		dl.Reason = unknownProvider
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byProvider == nil {
		d.byProvider, d.byReason = map[string]int64{}, map[string]int64{}
	}
	d.byProvider[dl.Provider]++
	d.byReason[dl.Reason]++
}

// counts returns copies of the counts by provider and by reason.
func (d *deadLetters) counts() (byProvider, byReason map[string]int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	byProvider, byReason = maps.Clone(d.byProvider), maps.Clone(d.byReason)
	if byProvider == nil {
		byProvider, byReason = map[string]int64{}, map[string]int64{}
	}
	return byProvider, byReason
}

// RunDeadLetters reads reviews.dlq.v1 from the first record each partition
// still holds and then follows it, counting dead letters by provider and
// reason for the operator view, until ctx ends. It commits nothing (no
// consumer group): every api replica counts on its own. A record removed
// by retention stays counted until the api restarts. Dead letters are
// rare, so the counts cost a few map entries.
func (a *API) RunDeadLetters(ctx context.Context) error {
	topic := a.cfg.Names.Topic(kafkax.TopicDLQ)
	var parts map[int]kafkax.Span
	for attempt := 0; ; attempt++ {
		offs, err := a.kafka.get(ctx, []string{topic})
		if err == nil {
			parts = offs[topic]
			break
		}
		a.log.Warn("dead-letter counts: cannot list the partitions, retrying", zap.String("topic", topic), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(kafkax.Backoff(attempt, time.Second, 30*time.Second)):
		}
	}
	var wg sync.WaitGroup
	for p := range parts {
		wg.Go(func() { a.followDeadLetters(ctx, topic, p) })
	}
	wg.Wait()
	return nil
}

func (a *API) followDeadLetters(ctx context.Context, topic string, partition int) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: a.cfg.Brokers, Topic: topic, Partition: partition,
		MinBytes: 1, MaxBytes: kafkax.FetchBytes, MaxWait: time.Second,
	})
	defer r.Close()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		a.log.Error("dead-letter counts: set offset", zap.Int("partition", partition), zap.Error(err))
		return
	}
	for attempt := 0; ; {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("dead-letter counts: read failed, retrying", zap.Int("partition", partition), zap.Error(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(kafkax.Backoff(attempt, time.Second, 30*time.Second)):
			}
			attempt++
			continue
		}
		attempt = 0
		a.dead.add(m.Value)
	}
}
