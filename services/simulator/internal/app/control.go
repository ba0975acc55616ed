package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/catalog"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/webhooks"
)

// The control API of docs/contract.md §6 (and docs/providers.md).
func (a *App) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/control/reviews", only(http.MethodPost, a.postReview))
	mux.HandleFunc("/control/truth", only(http.MethodGet, a.getTruth))
	mux.HandleFunc("/control/faults", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			a.postFaults(w, r)
		case http.MethodGet:
			a.getFaults(w, r)
		default:
			w.Header().Set("Allow", "GET, POST")
			obs.WriteError(w, http.StatusMethodNotAllowed, "use GET or POST")
		}
	})
	mux.HandleFunc("/control/stats", only(http.MethodGet, a.getStats))
}

func only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			obs.WriteError(w, http.StatusMethodNotAllowed, "only "+method+" is allowed here")
			return
		}
		h(w, r)
	}
}

// maxControlBody bounds a control request (a review body is at most 100 KB).
const maxControlBody = 2 << 20

// decodeBody decodes a JSON request strictly (unknown fields are errors, so
// a typo is not silently ignored), answering 400 or 413 itself.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			obs.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxControlBody))
			return false
		}
		obs.WriteError(w, http.StatusBadRequest, "body is not the expected JSON: "+err.Error())
		return false
	}
	if dec.More() {
		obs.WriteError(w, http.StatusBadRequest, "body holds more than one JSON value")
		return false
	}
	return true
}

// ReviewRequest is the body of POST /control/reviews.
type ReviewRequest struct {
	Provider string                `json:"provider"`
	Op       string                `json:"op"`
	Review   *provider.GenericData `json:"review"`
	Webhook  bool                  `json:"webhook"`
}

// ReviewResponse answers POST /control/reviews.
type ReviewResponse struct {
	ID        string          `json:"id"`
	Provider  string          `json:"provider"`
	ReviewID  string          `json:"review_id"`
	Op        string          `json:"op"`
	Version   int64           `json:"version"`
	Event     json.RawMessage `json:"event"`
	WebhookID *string         `json:"webhook_id"`
}

func (a *App) postReview(w http.ResponseWriter, r *http.Request) {
	var req ReviewRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if _, ok := a.sims[req.Provider]; !ok {
		obs.WriteError(w, http.StatusBadRequest, fmt.Sprintf("unknown provider %q (known: %v)", req.Provider, a.names))
		return
	}
	if req.Review == nil {
		obs.WriteError(w, http.StatusBadRequest, `"review" (generic data) is required`)
		return
	}
	if req.Webhook && !a.sender.HasKey(req.Provider) {
		obs.WriteError(w, http.StatusBadRequest, fmt.Sprintf("cannot send a webhook for %s: %s is not set",
			req.Provider, config.SecretVar(req.Provider)))
		return
	}
	e, id, err := a.apply(req.Provider, catalog.Change{Op: catalog.Op(req.Op), Data: *req.Review}, req.Webhook, "control")
	switch {
	case errors.Is(err, catalog.ErrInvalid):
		obs.WriteError(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, catalog.ErrNotFound):
		obs.WriteError(w, http.StatusNotFound, err.Error())
		return
	case errors.Is(err, catalog.ErrConflict):
		obs.WriteError(w, http.StatusConflict, err.Error())
		return
	case errors.Is(err, webhooks.ErrQueueFull):
		w.Header().Set("Retry-After", "5")
		obs.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	case err != nil:
		obs.WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	res := ReviewResponse{
		ID: review.Key(req.Provider, e.ReviewID), Provider: req.Provider, ReviewID: e.ReviewID,
		Op: req.Op, Version: e.Version, Event: e.Event,
	}
	if id != "" {
		res.WebhookID = &id
	}
	obs.WriteJSON(w, http.StatusOK, res)
}

// TruthResponse answers GET /control/truth.
type TruthResponse struct {
	MovieID string          `json:"movie_id"`
	Reviews []review.Review `json:"reviews"`
}

func (a *App) getTruth(w http.ResponseWriter, r *http.Request) {
	movie := r.URL.Query().Get("movie_id")
	if !review.ValidMovieID(movie) {
		obs.WriteError(w, http.StatusBadRequest, fmt.Sprintf("movie_id=%q is not an IMDb id (tt + 7 to 10 digits)", movie))
		return
	}
	names := a.names
	if p := r.URL.Query().Get("provider"); p != "" {
		if _, ok := a.sims[p]; !ok {
			obs.WriteError(w, http.StatusBadRequest, fmt.Sprintf("unknown provider %q (known: %v)", p, a.names))
			return
		}
		names = []string{p}
	}
	res := TruthResponse{MovieID: movie, Reviews: []review.Review{}}
	for _, n := range names {
		res.Reviews = append(res.Reviews, a.sims[n].cat.Truth(movie)...)
	}
	sort.Slice(res.Reviews, func(i, j int) bool { return res.Reviews[i].ID < res.Reviews[j].ID })
	obs.WriteJSON(w, http.StatusOK, res)
}

// FaultsRequest is the body of POST /control/faults.
type FaultsRequest struct {
	Provider string `json:"provider"`
	Faults
}

// FaultsResponse answers POST /control/faults.
type FaultsResponse struct {
	Provider string `json:"provider"`
	Faults   Faults `json:"faults"`
}

func (a *App) postFaults(w http.ResponseWriter, r *http.Request) {
	var req FaultsRequest
	if !decodeBody(w, r, &req) {
		return
	}
	s, ok := a.sims[req.Provider]
	if !ok {
		obs.WriteError(w, http.StatusBadRequest, fmt.Sprintf("unknown provider %q (known: %v)", req.Provider, a.names))
		return
	}
	f := req.Faults
	switch {
	case !(f.ErrorRate >= 0 && f.ErrorRate <= 1):
		obs.WriteError(w, http.StatusBadRequest, fmt.Sprintf("error_rate must be 0 to 1, got %v", f.ErrorRate))
		return
	case f.LatencyMs < 0 || f.LatencyMs > 120000:
		obs.WriteError(w, http.StatusBadRequest, fmt.Sprintf("latency_ms must be 0 to 120000, got %d", f.LatencyMs))
		return
	case f.RateLimitPerS < 0 || math.IsInf(f.RateLimitPerS, 0) || f.RateLimitPerS > 1e6:
		obs.WriteError(w, http.StatusBadRequest, fmt.Sprintf("rate_limit_per_s must be 0 (published limit) to 1000000, got %v", f.RateLimitPerS))
		return
	}
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
	rate := s.published
	if f.RateLimitPerS > 0 {
		rate = f.RateLimitPerS
	}
	s.bucket.SetRate(rate)
	a.log.Info("faults set", zap.String("provider", req.Provider), zap.Float64("error_rate", f.ErrorRate),
		zap.Int("latency_ms", f.LatencyMs), zap.Float64("rate_limit_per_s", rate), zap.Bool("down", f.Down))
	obs.WriteJSON(w, http.StatusOK, FaultsResponse{Provider: req.Provider, Faults: f})
}

func (a *App) getFaults(w http.ResponseWriter, _ *http.Request) {
	out := map[string]Faults{}
	for n, s := range a.sims {
		out[n] = s.getFaults()
	}
	obs.WriteJSON(w, http.StatusOK, out)
}

// ProviderStats is one provider's part of GET /control/stats.
type ProviderStats struct {
	apiCounters
	PerSecond     []SecondCount  `json:"per_second"`
	MaxPerSecond  int64          `json:"max_per_second"`
	RateLimitPerS float64        `json:"rate_limit_per_s"`
	FeedLength    int64          `json:"feed_length"`
	Webhooks      webhooks.Stats `json:"webhooks"`
}

func (a *App) getStats(w http.ResponseWriter, _ *http.Request) {
	hooks := a.sender.Stats()
	out := map[string]ProviderStats{}
	for n, s := range a.sims {
		totals, secs := s.stats.snapshot()
		ps := ProviderStats{apiCounters: totals, PerSecond: secs, RateLimitPerS: s.bucket.Rate(),
			FeedLength: s.cat.Len(), Webhooks: hooks[n]}
		for _, c := range secs {
			ps.MaxPerSecond = max(ps.MaxPerSecond, c.Requests)
		}
		out[n] = ps
	}
	obs.WriteJSON(w, http.StatusOK, out)
}
