package app

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/catalog"
)

// deliveryBody wraps one change's event as the provider's webhook body
// (docs/providers.md): generic sends the bare event, cinescore an object
// with "notifications", reelpulse a bare array. The event's bytes are put in
// untouched.
func deliveryBody(name, id string, e catalog.Entry, now time.Time) ([]byte, error) {
	switch name {
	case "generic":
		return e.Event, nil
	case "cinescore":
		return json.Marshal(provider.CinescoreDelivery{DeliveryID: id, SentMs: now.UnixMilli(),
			Notifications: []json.RawMessage{e.Event}})
	case "reelpulse":
		return json.Marshal([]json.RawMessage{e.Event})
	}
	return nil, fmt.Errorf("no webhook shape for provider %q", name)
}
