package app

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/reviewpipe/reviewpipe/services/api/internal/store"
)

// The page cursor is opaque to clients: base64url of a small JSON object
// holding the last row's sort key (source_updated_at, id).
type wireCursor struct {
	T time.Time `json:"t"`
	I string    `json:"i"`
}

func encodeCursor(c store.Cursor) string {
	b, _ := json.Marshal(wireCursor{T: c.SourceUpdatedAt.UTC(), I: c.ID})
	return base64.RawURLEncoding.EncodeToString(b)
}

var errCursor = errors.New("cursor is malformed: pass next_cursor from the previous page unchanged")

func decodeCursor(s string) (*store.Cursor, error) {
	if len(s) > 1024 {
		return nil, errCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errCursor
	}
	var w wireCursor
	if err := json.Unmarshal(b, &w); err != nil || w.I == "" || w.T.IsZero() {
		return nil, errCursor
	}
	return &store.Cursor{SourceUpdatedAt: w.T, ID: w.I}, nil
}
