package processor

import "github.com/reviewpipe/reviewpipe/pkg/dedupe"

// decide runs each normalized record of the batch, in input order, through
// the keyed state: the decisions are staged in the worker's overlay, so the
// partition's store changes only once the changelog has them. A record
// later in the batch sees what an earlier one staged.
func (w *worker) decide(recs []record) {
	for i := range recs {
		r := &recs[i]
		if r.failed() {
			continue
		}
		in := dedupe.EntryOf(r.event, r.msg.Offset)
		r.decision = dedupe.Apply(w.overlay, r.event.Review.ID, in, w.confirmed)
	}
}
