package app

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/catalog"
)

// deliveryBody wraps one change's event as the provider's webhook body
// (docs/providers.md); the event's bytes are put in untouched.
func deliveryBody(name, id string, e catalog.Entry, now time.Time) ([]byte, error) {
	wrap, ok := webhookBodies[name]
	if !ok {
		return nil, fmt.Errorf("no webhook shape for provider %q", name)
	}
	return wrap(id, e.Event, now)
}

// webhookBodies are the providers' webhook bodies around one event, by
// name: generic sends the bare event, cinescore an object with
// "notifications", reelpulse a bare array.
var webhookBodies = map[string]func(id string, event json.RawMessage, now time.Time) ([]byte, error){
	"generic": func(_ string, ev json.RawMessage, _ time.Time) ([]byte, error) { return ev, nil },
	"cinescore": func(id string, ev json.RawMessage, now time.Time) ([]byte, error) {
		return json.Marshal(provider.CinescoreDelivery{DeliveryID: id, SentMs: now.UnixMilli(),
			Notifications: []json.RawMessage{ev}})
	},
	"reelpulse": func(_ string, ev json.RawMessage, _ time.Time) ([]byte, error) {
		return json.Marshal([]json.RawMessage{ev})
	},
}
