package app

import (
	"slices"
	"time"

	"github.com/reviewpipe/reviewpipe/services/api/internal/store"
)

// Provider statuses of docs/contract.md §4, from best to worst.
const (
	statusOK       = "ok"
	statusDegraded = "degraded"
	statusDown     = "down"
)

var severity = map[string]int{statusOK: 0, statusDegraded: 1, statusDown: 2}

// ProviderStatus is one provider's entry in an answer.
type ProviderStatus struct {
	Name          string     `json:"name"`
	Status        string     `json:"status"`
	LastSuccessAt *time.Time `json:"last_success_at"`
}

// providerView is what the answers and the operator view derive from one
// provider's health row.
type providerView struct {
	ProviderStatus
	// Stale: the last successful sync is older than the objective, or
	// there was none.
	Stale     bool
	Age       *time.Duration
	Objective time.Duration
	Health    *store.ProviderHealth
}

// providerViews derives each provider's status at now: the worse of what
// the poller reported and what freshness says (ok within the objective,
// degraded past it, down when the provider never synced or has no health
// row yet). Providers are the configured ones plus any with a row, sorted.
func providerViews(cfg *Config, rows map[string]store.ProviderHealth, now time.Time) []providerView {
	names := slices.Clone(cfg.Providers)
	for name := range rows {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := make([]providerView, 0, len(names))
	for _, name := range names {
		v := providerView{ProviderStatus: ProviderStatus{Name: name, Status: statusDown}, Stale: true, Objective: cfg.objective(name)}
		row, ok := rows[name]
		if ok {
			v.Health = &row
			derived := statusDown
			if row.LastSuccessAt != nil {
				at := row.LastSuccessAt.UTC()
				v.LastSuccessAt = &at
				age := max(0, now.Sub(at))
				v.Age = &age
				v.Stale = age > v.Objective
				derived = statusOK
				if v.Stale {
					derived = statusDegraded
				}
			}
			v.Status = derived
			if s, known := severity[row.Status]; known && s > severity[derived] {
				v.Status = row.Status
			}
		}
		out = append(out, v)
	}
	return out
}

// anyStale reports whether any provider's last sync is past its objective.
func anyStale(vs []providerView) bool {
	for _, v := range vs {
		if v.Stale {
			return true
		}
	}
	return false
}
