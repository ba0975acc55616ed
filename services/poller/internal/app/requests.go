package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/store"
)

// ConsumeRequests consumes reviews.sync-requests.v1 in the poller's consumer
// group until ctx ends. Each request is queued in PostgreSQL (refresh_jobs,
// backfill_jobs) before its offset is committed; the replica holding a
// provider's lease serves them. A record that is no sync request goes to
// reviews.dlq.v1 (stage poller) and is committed. It blocks; it returns nil
// when ctx ends, or a setup error.
func (s *Service) ConsumeRequests(ctx context.Context, cfg kafkax.GroupConfig) error {
	if cfg.Log == nil {
		cfg.Log = s.log
	}
	return kafkax.RunGroup(ctx, cfg, func(ctx context.Context, a kafkax.Assignment) (kafkax.Worker, int64, error) {
		return &requestWorker{s: s}, a.Committed, nil
	})
}

type requestWorker struct{ s *Service }

func (rw *requestWorker) Close() {}

// Handle queues every request of the batch; any PostgreSQL or Kafka error
// fails the batch, which RunGroup hands again (queuing is idempotent per
// request id).
func (rw *requestWorker) Handle(ctx context.Context, batch []kafka.Message) error {
	for _, m := range batch {
		if err := rw.s.queue(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// errRefused is a sync request that can never be served.
type errRefused struct{ msg string }

func (e errRefused) Error() string { return e.msg }

func (s *Service) queue(ctx context.Context, m kafka.Message) error {
	req, err := parseSyncRequest(m.Value)
	if err != nil {
		return s.deadLetterRequest(ctx, m, err)
	}
	log := s.log.With(zap.String("request_id", req.RequestID), zap.String("kind", string(req.Kind)))
	switch req.Kind {
	case envelope.SyncRefresh:
		targets := s.providerNames()
		if req.Provider != "" {
			if _, ok := s.workers[req.Provider]; !ok {
				return s.deadLetterRequest(ctx, m, errRefused{fmt.Sprintf("refresh names provider %q, which this poller does not sync (it syncs %s)",
					req.Provider, strings.Join(s.providerNames(), ", "))})
			}
			targets = []string{req.Provider}
		}
		fresh := 0
		for _, p := range targets {
			ok, err := s.st.QueueRefresh(ctx, store.Refresh{RequestID: req.RequestID, Provider: p, MovieID: req.MovieID, RequestedAt: req.RequestedAt})
			if err != nil {
				return err
			}
			if ok {
				fresh++
				s.workers[p].notify()
			}
		}
		outcome := "queued"
		if fresh == 0 {
			outcome = "duplicate"
		}
		s.m.syncRequests.WithLabelValues(string(req.Kind), outcome).Inc()
		log.Info("refresh request "+outcome, zap.String("movie_id", req.MovieID), zap.Strings("providers", targets))
	case envelope.SyncBackfill:
		job := store.Backfill{RequestID: req.RequestID, Provider: req.Provider, Since: req.Since,
			RequestedAt: req.RequestedAt, RequestedBy: req.RequestedBy}
		var failure string
		switch {
		case s.workers[req.Provider] == nil:
			failure = fmt.Sprintf("provider %q is not synced by this poller (it syncs %s)", req.Provider, strings.Join(s.providerNames(), ", "))
		case req.Since.After(time.Now().Add(time.Minute)):
			failure = fmt.Sprintf("since %s is in the future", req.Since.Format(time.RFC3339))
		}
		ok, err := s.st.QueueBackfill(ctx, job, failure)
		if err != nil {
			return err
		}
		outcome := "queued"
		switch {
		case !ok:
			outcome = "duplicate"
		case failure != "":
			outcome = "refused"
		default:
			s.workers[req.Provider].notify()
		}
		s.m.syncRequests.WithLabelValues(string(req.Kind), outcome).Inc()
		log.Info("backfill request "+outcome, zap.String("provider", req.Provider), zap.Time("since", req.Since),
			zap.String("error", failure))
	}
	return nil
}

// parseSyncRequest decodes and checks a sync request; its errors are permanent.
func parseSyncRequest(b []byte) (envelope.SyncRequest, error) {
	var r envelope.SyncRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return r, errRefused{"sync request is not JSON: " + err.Error()}
	}
	switch {
	case r.RequestID == "":
		return r, errRefused{"sync request has no request_id"}
	case r.Kind != envelope.SyncRefresh && r.Kind != envelope.SyncBackfill:
		return r, errRefused{fmt.Sprintf("sync request kind %q is neither %q nor %q", r.Kind, envelope.SyncRefresh, envelope.SyncBackfill)}
	case r.Kind == envelope.SyncRefresh && !review.ValidMovieID(r.MovieID):
		return r, errRefused{fmt.Sprintf("refresh movie_id %q is not an IMDb id (tt + 7 to 10 digits)", r.MovieID)}
	case r.Kind == envelope.SyncBackfill && r.Provider == "":
		return r, errRefused{"backfill request names no provider"}
	}
	if r.RequestedAt.IsZero() {
		r.RequestedAt = time.Now().UTC()
	}
	return r, nil
}

func (s *Service) deadLetterRequest(ctx context.Context, m kafka.Message, cause error) error {
	var refused errRefused
	if !errors.As(cause, &refused) {
		return cause
	}
	now := time.Now()
	dl := envelope.DeadLetterOf(envelope.StagePoller, "invalid_sync_request", cause, m, "-", now)
	dl.Provider = "" // a sync request's key is a movie or a provider, not a review key
	wctx, cancel := context.WithTimeout(ctx, s.cfg.KafkaDeadline)
	defer cancel()
	if err := envelope.WriteDeadLetters(wctx, s.dlq, dl); err != nil {
		return fmt.Errorf("dead-letter sync request: %w", err)
	}
	s.m.syncRequests.WithLabelValues("unknown", "dead_lettered").Inc()
	s.m.deadLetters.WithLabelValues("", "invalid_sync_request").Inc()
	s.log.Warn("sync request refused: dead-lettered", zap.String("dead_letter_id", dl.ID), zap.Error(cause))
	return nil
}
