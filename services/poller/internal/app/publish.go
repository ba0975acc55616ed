package app

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/feed"
)

// Writer is what the poller needs of a Kafka writer: a synchronous, acks=all
// WriteMessages (see kafkax.NewWriter).
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// publisher writes one provider's pages to Kafka: each event as a raw
// envelope to reviews.raw.v1, or dead-lettered. Used by its worker's
// goroutine only.
type publisher struct {
	provider string
	adapter  provider.Adapter
	raw, dlq Writer
	// deadline bounds one page's write (Config.KafkaDeadline).
	deadline time.Duration
	m        *metrics
	log      *zap.Logger
	// recent holds digests of events the live stream published lately, so
	// the overlap of a rewound pass is not published twice by this process.
	recent *recentSet
}

// published counts what publish did with a page.
type published struct {
	published, deadLettered, skipped int
	// newest is the newest change time among the page's valid events.
	newest time.Time
}

// publish writes a page's events to reviews.raw.v1, each as the payload of
// a raw envelope with its bytes untouched, keyed {provider}:{review_id}
// (the id the provider's adapter reads from the event). An event the
// adapter refuses has no trustworthy key: its raw envelope goes to
// reviews.dlq.v1 (stage poller) with the reason, where `reviewctl dlq
// redrive` can send it on once fixed. publish returns only after Kafka
// acknowledged every record; only then may the page's cursor be saved.
//
// With skipRecent, events this process published lately (the overlap of a
// rewound live pass) are not published again.
func (p *publisher) publish(ctx context.Context, source envelope.Source, page feed.Page, skipRecent bool) (published, error) {
	var res published
	if len(page.Events) == 0 {
		return res, nil
	}
	accepted := time.Now().UTC()
	delivery := pageID(source)
	msgs := make([]kafka.Message, 0, len(page.Events))
	raws := make([]envelope.Raw, 0, len(page.Events))
	var dls []envelope.DeadLetter
	digests := make([]string, 0, len(page.Events))
	for _, ev := range page.Events {
		sum := sha256.Sum256(ev)
		digest := hex.EncodeToString(sum[:16])
		if skipRecent && p.recent.Has(digest) {
			res.skipped++
			continue
		}
		raw := envelope.Raw{
			// Stable per change: a re-read of the same event has the
			// same id, which makes duplicates easy to trace.
			EventID:    envelope.EventID(p.provider, "poll:"+digest, 0),
			Provider:   p.provider,
			Source:     source,
			ReceivedAt: accepted,
			DeliveryID: delivery,
			Payload:    json.RawMessage(ev),
		}
		norm, err := p.adapter.Normalize(ev, accepted)
		if err != nil {
			dl, err := p.deadLetter(raw, norm, err, accepted)
			if err != nil {
				return res, err
			}
			dls = append(dls, dl)
			digests = append(digests, digest)
			continue
		}
		m, err := raw.Message(norm.Review.ExternalID, accepted)
		if err != nil {
			return res, err
		}
		msgs, raws = append(msgs, m), append(raws, raw)
		digests = append(digests, digest)
		if norm.Review.SourceUpdatedAt.After(res.newest) {
			res.newest = norm.Review.SourceUpdatedAt
		}
	}
	tooLarge, err := p.write(ctx, p.raw, msgs)
	if err != nil {
		return res, fmt.Errorf("publish %d events to %s: %w", len(msgs), kafkax.TopicRaw, err)
	}
	for _, i := range tooLarge {
		cause := provider.Errorf(provider.ReasonTooLarge, "%s refused the event's raw record of %d bytes as too large",
			kafkax.TopicRaw, len(msgs[i].Value))
		dl, err := p.deadLetter(raws[i], review.Event{}, cause, accepted)
		if err != nil {
			return res, err
		}
		dl.Key = string(msgs[i].Key)
		dls = append(dls, dl)
	}
	if err := p.writeDeadLetters(ctx, dls); err != nil {
		return res, fmt.Errorf("dead-letter %d events: %w", len(dls), err)
	}
	for _, d := range digests {
		p.recent.Add(d)
	}
	res.published, res.deadLettered = len(msgs)-len(tooLarge), len(dls)
	p.m.events.WithLabelValues(p.provider, string(source)).Add(float64(len(msgs)))
	return res, nil
}

// deadLetter builds the dead letter of a page's event: its raw envelope,
// keyed by the review when the adapter could still say which (a field over
// its limit), else unkeyed.
func (p *publisher) deadLetter(raw envelope.Raw, norm review.Event, cause error, now time.Time) (envelope.DeadLetter, error) {
	b, err := json.Marshal(raw)
	if err != nil {
		return envelope.DeadLetter{}, fmt.Errorf("encode raw envelope: %w", err)
	}
	reason := string(provider.ReasonOf(cause))
	if reason == "" {
		reason = string(provider.ReasonInvalidField)
	}
	key := ""
	if norm.Review.ID != "" {
		key = norm.Review.ID
	}
	dl := envelope.NewDeadLetter(envelope.StagePoller, reason, cause, key, b, now)
	dl.Provider = p.provider
	dl.Headers = map[string]string{
		kafkax.HeaderEventID:  raw.EventID,
		kafkax.HeaderSource:   string(raw.Source),
		kafkax.HeaderAccepted: now.UTC().Format(time.RFC3339Nano),
	}
	p.m.deadLetters.WithLabelValues(p.provider, reason).Inc()
	p.log.Warn("provider event refused: dead-lettered", zap.String("reason", reason),
		zap.String("error", cause.Error()), zap.String("dead_letter_id", dl.ID))
	return dl, nil
}

// write writes msgs with kafkax.WriteAll and returns the indexes of those
// Kafka refuses alone as too large.
func (p *publisher) write(ctx context.Context, wr Writer, msgs []kafka.Message) ([]int, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	// A stopping poller still finishes (or times out) a write it began,
	// so a page is never half-published because of the shutdown.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.deadline)
	defer cancel()
	start := time.Now()
	tooLarge, err := kafkax.WriteAll(ctx, wr, msgs)
	p.observeWrite(start, err)
	return tooLarge, err
}

// writeDeadLetters writes dls with envelope.WriteDeadLetters, under the
// same deadline as write.
func (p *publisher) writeDeadLetters(ctx context.Context, dls []envelope.DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.deadline)
	defer cancel()
	start := time.Now()
	err := envelope.WriteDeadLetters(ctx, p.dlq, dls...)
	p.observeWrite(start, err)
	return err
}

func (p *publisher) observeWrite(start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	p.m.kafkaWrite.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
}

// pageID names one fetched page, the delivery_id of its raw envelopes.
func pageID(source envelope.Source) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return string(source) + "_" + hex.EncodeToString(b)
}

// recentSet remembers the most recent n digests. Used by one worker
// goroutine only.
type recentSet struct {
	max   int
	order *list.List
	index map[string]*list.Element
}

func newRecentSet(n int) *recentSet {
	return &recentSet{max: n, order: list.New(), index: make(map[string]*list.Element, n)}
}

func (r *recentSet) Has(d string) bool { _, ok := r.index[d]; return ok }

func (r *recentSet) Add(d string) {
	if e, ok := r.index[d]; ok {
		r.order.MoveToFront(e)
		return
	}
	r.index[d] = r.order.PushFront(d)
	for r.order.Len() > r.max {
		old := r.order.Back()
		r.order.Remove(old)
		delete(r.index, old.Value.(string))
	}
}
