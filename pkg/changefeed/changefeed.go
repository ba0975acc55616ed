// Package changefeed is the format of the sink's change notifications:
// PostgreSQL NOTIFY on Channel, sent inside the transaction that writes the
// change, so a notification is delivered only once its change is readable.
// The sink writes them, the api turns them into live updates, and the load
// benchmark times freshness by them.
//
// A payload is a JSON array of Notices, one per movie whose visible reviews
// a batch changed, and a batch sends as few notifications as PostgreSQL's
// 8000-byte payload limit allows, usually one. One notification per movie
// cost PostgreSQL and every listener a message each: about 15% of the
// pipeline's throughput with 10-review deliveries (make bench with
// notifications off against on).
package changefeed

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Channel is the PostgreSQL notification channel.
const Channel = "review_changes"

// Notice is one changed movie.
type Notice struct {
	MovieID string   `json:"movie_id"`
	IDs     []string `json:"ids"`
	// More is set when the ids did not fit into a notification: the
	// listener should reload the movie's reviews instead.
	More bool `json:"more,omitempty"`
}

// MaxPayload keeps a payload under PostgreSQL's 8000-byte limit.
const MaxPayload = 7000

// NewNotice is the notice of movie with as many of ids as fit a payload,
// More set when some did not.
func NewNotice(movie string, ids []string) Notice {
	n := Notice{MovieID: movie}
	size := len(movie) + 40
	for _, id := range ids {
		if size+len(id)+3 > MaxPayload {
			n.More = true
			break
		}
		n.IDs = append(n.IDs, id)
		size += len(id) + 3
	}
	return n
}

// Payloads packs notices, each built by NewNotice, into as few payloads of
// at most MaxPayload bytes as they fit. It returns nil for none.
func Payloads(ns []Notice) []string {
	var out []string
	payload := []byte{'['}
	for _, n := range ns {
		b, _ := json.Marshal(n)
		if len(payload) > 1 && len(payload)+1+len(b)+1 > MaxPayload {
			out = append(out, string(append(payload, ']')))
			payload = []byte{'['}
		}
		if len(payload) > 1 {
			payload = append(payload, ',')
		}
		payload = append(payload, b...)
	}
	if len(payload) > 1 {
		out = append(out, string(append(payload, ']')))
	}
	return out
}

// Parse decodes a payload: a JSON array of notices, or the single notice
// object that sinks before batched notifications sent.
func Parse(payload string) ([]Notice, error) {
	b := []byte(strings.TrimSpace(payload))
	var ns []Notice
	var err error
	if len(b) > 0 && b[0] == '{' {
		ns = make([]Notice, 1)
		err = json.Unmarshal(b, &ns[0])
	} else {
		err = json.Unmarshal(b, &ns)
	}
	if err == nil && len(ns) == 0 {
		err = errors.New("no notices")
	}
	for _, n := range ns {
		if err == nil && n.MovieID == "" {
			err = errors.New("a notice without movie_id")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("notification %q is not a review change notice: %v", string(b), err)
	}
	return ns, nil
}
