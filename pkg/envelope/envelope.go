// Package envelope defines the records that travel between stages besides
// the normalized event: the raw envelope of reviews.raw.v1, the dead letter
// of reviews.dlq.v1 and the sync request of reviews.sync-requests.v1.
package envelope

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
)

// Source says how a raw event reached reviewpipe.
type Source string

// The sources of docs/contract.md §5.
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
//
// The failed record's bytes are kept exactly: in Record when they are valid
// UTF-8 JSON with no white space around the value, base64-encoded in
// RecordBase64 otherwise (a body that is not JSON,
// Latin-1 text, a truncated record), so RecordBytes gives back what was
// sent, byte for byte. At most MaxRecordBytes of them are kept; a longer
// record keeps its first MaxRecordBytes with RecordTruncated set.
type DeadLetter struct {
	// ID identifies the dead letter for `reviewctl dlq show`. It is derived
	// from the stage, reason, key and record, so the same failure dead-
	// lettered again has the same id.
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
	// Record is the failed record's value when it is JSON (RecordEncoding
	// "json"), null when it is in RecordBase64. Dead letters written before
	// record_base64 existed hold other bytes here as a JSON string
	// (RecordEncoding "text").
	Record json.RawMessage `json:"record,omitempty"`
	// RecordBase64 holds the failed record's bytes when they are not
	// valid JSON or were truncated (RecordEncoding "base64").
	RecordBase64 []byte `json:"record_base64,omitempty"`
	// RecordEncoding is "json", "base64", or "text" (older dead letters).
	RecordEncoding string `json:"record_encoding"`
	// RecordSize is the failed record's whole length in bytes.
	RecordSize int `json:"record_size"`
	// RecordTruncated says only the first MaxRecordBytes were kept.
	RecordTruncated bool `json:"record_truncated,omitempty"`
	// Headers of the failed record or request (never secrets).
	Headers map[string]string `json:"headers,omitempty"`
}

// The record encodings of a dead letter.
const (
	RecordJSON   = "json"
	RecordBase64 = "base64"
	recordText   = "text" // written by older versions only
)

// MaxRecordBytes bounds the failed bytes a dead letter keeps:
// WEBHOOK_MAX_BODY's ceiling (kafkax.MaxBodyLimit), so every body the
// receiver takes is kept whole, and the dead letter of the largest record,
// base64-encoded, fits the topic's max.message.bytes.
const MaxRecordBytes = 2 << 20

// maxErrorBytes bounds the error text a dead letter keeps.
const maxErrorBytes = 4 << 10

// NewDeadLetter builds a dead letter around the failed bytes. It is the one
// place dead letters are made (DeadLetterOf adds where a Kafka record was
// read); the bytes are kept as the DeadLetter doc says.
func NewDeadLetter(stage Stage, reason string, err error, key string, record []byte, now time.Time) DeadLetter {
	msg := err.Error()
	if len(msg) > maxErrorBytes {
		msg = strings.ToValidUTF8(msg[:maxErrorBytes], "") + " (cut)"
	}
	dl := DeadLetter{
		Stage:      stage,
		Reason:     reason,
		Error:      msg,
		FailedAt:   now.UTC(),
		Key:        key,
		RecordSize: len(record),
	}
	kept := record
	if len(kept) > MaxRecordBytes {
		kept, dl.RecordTruncated = kept[:MaxRecordBytes], true
	}
	// JSON is kept as JSON only when decoding gives back the same bytes:
	// valid UTF-8 (the topic's value is JSON text), and no white space
	// around the value, which a decoder drops.
	if !dl.RecordTruncated && utf8.Valid(kept) && len(bytes.TrimSpace(kept)) == len(kept) && json.Valid(kept) { // a cold path: encoding/json
		dl.Record, dl.RecordEncoding = json.RawMessage(kept), RecordJSON
	} else {
		dl.Record, dl.RecordBase64, dl.RecordEncoding = json.RawMessage("null"), kept, RecordBase64
	}
	h := sha256.New()
	h.Write([]byte(string(stage) + "\x00" + reason + "\x00" + key + "\x00"))
	h.Write(record)
	dl.ID = "dlq_" + hex.EncodeToString(h.Sum(nil)[:10])
	return dl
}

// RecordBytes returns the failed record's original bytes (its first
// MaxRecordBytes when RecordTruncated).
func (d DeadLetter) RecordBytes() []byte {
	switch d.RecordEncoding {
	case RecordBase64:
		return d.RecordBase64
	case recordText:
		var s string
		if json.Unmarshal(d.Record, &s) == nil {
			return []byte(s)
		}
	}
	return d.Record
}

// ParseDeadLetter decodes a reviews.dlq.v1 value.
func ParseDeadLetter(b []byte) (DeadLetter, error) {
	var d DeadLetter
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("dead letter is not JSON: %w", err)
	}
	if d.ID == "" {
		return d, fmt.Errorf("dead letter has no id")
	}
	return d, nil
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
