package reconcile

import (
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/testlog"
)

// expectedOf folds one record and returns its slot, and the row the sink
// would write for it.
func expectedOf(t *testing.T, id string, v int64, deleted bool, body string) (*slot, *Row) {
	t.Helper()
	m := testlog.RawMessage(id, v, deleted, body, "e")
	ev, _, err := normalize(provider.Default(), &m, testlog.T0)
	if err != nil {
		t.Fatal(err)
	}
	e := dedupe.EntryOf(ev, 0)
	r := ev.Review
	row := &Row{ID: r.ID, Provider: r.Provider, ExternalID: r.ExternalID, MovieID: r.MovieID, Author: r.Author,
		Title: r.Title, Body: r.Body, Language: r.Language, URL: r.URL, Rating: r.Rating, Version: r.Version,
		Deleted: deleted, ContentHash: review.ContentHash(ev.Op, r), SourceUpdatedAt: r.SourceUpdatedAt}
	return &slot{e: e, visible: e.Hash}, row
}

func TestClassify(t *testing.T) {
	exp, row := expectedOf(t, "a", 3, false, "body")
	expDel, rowDel := expectedOf(t, "a", 3, true, "")
	_, rowV2 := expectedOf(t, "a", 2, false, "body")
	_, rowV4 := expectedOf(t, "a", 4, false, "body")
	_, rowOther := expectedOf(t, "a", 3, false, "other body")
	edited := *row
	edited.Body = "edited by hand"
	noHash := *row
	noHash.ContentHash = ""
	noHashEdited := edited
	noHashEdited.ContentHash = ""
	for _, c := range []struct {
		name       string
		exp        *slot
		row        *Row
		kind       string
		repairable bool
	}{
		{"in sync", exp, row, "", false},
		{"in sync without content_hash", exp, &noHash, "", false},
		{"tombstone in sync", expDel, rowDel, "", false},
		{"missing", exp, nil, Missing, true},
		{"missing tombstone", expDel, nil, Missing, true},
		{"stale", exp, rowV2, Stale, true},
		{"ahead", exp, rowV4, Ahead, false},
		{"extra: no event", nil, row, Extra, true},
		{"orphan tombstone", nil, rowDel, "", false},
		{"extra: deleted in the log", expDel, row, Extra, true},
		{"tombstone where the log is live", exp, rowDel, Mismatched, false},
		{"edited under the log's hash", exp, &edited, Mismatched, false},
		{"edited, no content_hash", exp, &noHashEdited, Mismatched, exp.e.Compare((&noHashEdited).entry()) > 0},
	} {
		v := classify(c.exp, c.row)
		if v.kind != c.kind || v.repairable != c.repairable {
			t.Errorf("%s: got %q repairable=%v (%s), want %q repairable=%v", c.name, v.kind, v.repairable, v.detail, c.kind, c.repairable)
		}
	}
	// Same version, other content: repairable exactly when the log's
	// change wins the guard's tie-break.
	expOther, _ := expectedOf(t, "a", 3, false, "other body")
	for _, c := range []struct {
		exp *slot
		row *Row
	}{{exp, rowOther}, {expOther, row}} {
		v := classify(c.exp, c.row)
		want := c.exp.e.Compare(c.row.entry()) > 0
		if v.kind != Mismatched || v.repairable != want {
			t.Errorf("variant: %q repairable=%v, want mismatched repairable=%v", v.kind, v.repairable, want)
		}
	}
	// A provider time finer than PostgreSQL's microseconds is no drift.
	fine, fineRow := expectedOf(t, "b", 1, false, "x")
	m := testlog.RawMessage("b", 1, false, "x", "e")
	ev, _, _ := normalize(provider.Default(), &m, testlog.T0)
	ev.Review.SourceUpdatedAt = ev.Review.SourceUpdatedAt.Add(1500 * time.Nanosecond)
	fine.e = dedupe.EntryOf(ev, 0)
	fine.visible = visibleHash(ev)
	fineRow.SourceUpdatedAt = ev.Review.SourceUpdatedAt.Truncate(time.Microsecond)
	fineRow.ContentHash = review.ContentHash(ev.Op, ev.Review)
	if v := classify(fine, fineRow); v.kind != "" {
		t.Errorf("sub-microsecond time: %q (%s)", v.kind, v.detail)
	}
}
