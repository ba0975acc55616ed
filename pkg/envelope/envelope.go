// Package envelope defines the records that travel between stages besides
// the normalized event: the raw envelope of reviews.raw.v1, the dead letter
// of reviews.dlq.v1 and the sync request of reviews.sync-requests.v1.
package envelope

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
)

// Source says how a raw event reached reviewpipe.
type Source string

// The sources of CONTRACT §5.
const (
	SourceWebhook  Source = "webhook"
	SourcePoll     Source = "poll"
	SourceRefresh  Source = "refresh"
	SourceBackfill Source = "backfill"
	SourceReplay   Source = "replay"
)

// Valid reports whether s is one of the sources.
func (s Source) Valid() bool {
	switch s {
	case SourceWebhook, SourcePoll, SourceRefresh, SourceBackfill, SourceReplay:
		return true
	}
	return false
}

// Raw is the value of a reviews.raw.v1 record.
type Raw struct {
	EventID    string          `json:"event_id"`
	Provider   string          `json:"provider"`
	Source     Source          `json:"source"`
	ReceivedAt time.Time       `json:"received_at"`
	DeliveryID string          `json:"delivery_id"`
	Payload    json.RawMessage `json:"payload"`
}

// EventID derives a stable event id from the delivery and the event's index
// in it, so a redelivered webhook yields the same ids.
func EventID(provider, deliveryID string, index int) string {
	h := sha256.Sum256([]byte(provider + "\x00" + deliveryID + "\x00" + strconv.Itoa(index)))
	return "evt_" + hex.EncodeToString(h[:12])
}

// ParseRaw decodes and checks a raw envelope.
func ParseRaw(b []byte) (Raw, error) {
	var r Raw
	if err := jsonx.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("raw envelope is not JSON: %w", err)
	}
	switch {
	case r.EventID == "":
		return r, fmt.Errorf("raw envelope has no event_id")
	case r.Provider == "":
		return r, fmt.Errorf("raw envelope has no provider")
	case !r.Source.Valid():
		return r, fmt.Errorf("raw envelope has unknown source %q", r.Source)
	case len(r.Payload) == 0:
		return r, fmt.Errorf("raw envelope has no payload")
	}
	return r, nil
}

// Stage names where a record failed.
type Stage string

// The stages that dead-letter records.
const (
	StageReceiver  Stage = "receiver"
	StagePoller    Stage = "poller"
	StageProcessor Stage = "processor"
	StageSink      Stage = "sink"
)

// DeadLetter is the value of a reviews.dlq.v1 record: the failed record
// untouched, plus why it failed. Its key is the failed record's key.
type DeadLetter struct {
	// ID identifies the dead letter for `reviewctl dlq show`.
	ID     string `json:"id"`
	Stage  Stage  `json:"stage"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
	// FailedAt is when the stage gave up on the record.
	FailedAt time.Time `json:"failed_at"`
	// Provider, when known.
	Provider string `json:"provider,omitempty"`
	// Topic, Partition and Offset locate the failed record when it came
	// from Kafka (absent for a webhook body the receiver refused).
	Topic     string `json:"topic,omitempty"`
	Partition *int   `json:"partition,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
	// Key is the failed record's key.
	Key string `json:"key,omitempty"`
	// Record is the failed record's value: JSON kept as JSON, anything
	// else as a JSON string holding the bytes.
	Record json.RawMessage `json:"record"`
	// RecordEncoding is "json" or "text".
	RecordEncoding string `json:"record_encoding"`
	// Headers of the failed record or request (never secrets).
	Headers map[string]string `json:"headers,omitempty"`
}

// NewDeadLetter builds a dead letter around the failed bytes.
func NewDeadLetter(stage Stage, reason string, err error, key string, record []byte, now time.Time) DeadLetter {
	dl := DeadLetter{
		Stage:    stage,
		Reason:   reason,
		Error:    err.Error(),
		FailedAt: now.UTC(),
		Key:      key,
	}
	if json.Valid(record) { // a cold path: encoding/json
		dl.Record, dl.RecordEncoding = json.RawMessage(record), "json"
	} else {
		s, _ := json.Marshal(string(record))
		dl.Record, dl.RecordEncoding = s, "text"
	}
	h := sha256.Sum256(append([]byte(string(stage)+"\x00"+reason+"\x00"+key+"\x00"), record...))
	dl.ID = "dlq_" + hex.EncodeToString(h[:10])
	return dl
}

// RecordBytes returns the failed record's original bytes.
func (d DeadLetter) RecordBytes() []byte {
	if d.RecordEncoding == "text" {
		var s string
		if json.Unmarshal(d.Record, &s) == nil {
			return []byte(s)
		}
	}
	return d.Record
}

// SyncKind is what a sync request asks the poller for.
type SyncKind string

// The kinds of sync request.
const (
	SyncRefresh  SyncKind = "refresh"
	SyncBackfill SyncKind = "backfill"
)

// SyncRequest is the value of a reviews.sync-requests.v1 record, keyed by
// movie id (refresh) or provider (backfill).
type SyncRequest struct {
	RequestID   string    `json:"request_id"`
	Kind        SyncKind  `json:"kind"`
	MovieID     string    `json:"movie_id,omitempty"`
	Provider    string    `json:"provider,omitempty"`
	Since       time.Time `json:"since,omitzero"`
	RequestedAt time.Time `json:"requested_at"`
	RequestedBy string    `json:"requested_by,omitempty"`
}
