package app

// Stream is one kind of work a provider worker does, in priority order.
type Stream string

// The streams: live sync of the change feed, refresh of one movie on
// request, backfill of history. Also the value of poll_cursors.stream.
const (
	StreamLive     Stream = "live"
	StreamRefresh  Stream = "refresh"
	StreamBackfill Stream = "backfill"
)

// pending is what a provider worker could do next.
type pending struct {
	// live is true when a live pass is due or under way.
	live bool
	// refresh and backfill are true when such a job is queued or running.
	refresh, backfill bool
}

// choose picks the stream that gets the next request: live sync first,
// then refreshes, then backfill, which so only ever spends the budget the
// other two leave. "" when there is nothing to do.
//
// A worker sends one request at a time and calls choose again once the
// budget has a token for it, so a live pass that falls due while a
// backfill runs waits for at most one request, never for the backfill.
func choose(p pending) Stream {
	switch {
	case p.live:
		return StreamLive
	case p.refresh:
		return StreamRefresh
	case p.backfill:
		return StreamBackfill
	}
	return ""
}
