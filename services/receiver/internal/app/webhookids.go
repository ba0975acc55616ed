package app

import (
	"container/list"
	"sync"
)

// webhookIDs remembers the final answers of the most recent webhook-ids,
// so a redelivery gets the same answer without a second effect: 2xx
// "duplicate" without a second write once a delivery was accepted, and the
// identical 400 (same dead_letter_id, no second dead letter) once one was
// refused (docs/contract.md §2). It also lets only one delivery of an id be
// handled at a time: a redelivery that arrives while the first is still
// waiting on Kafka waits for its answer. Answers that are not final (429,
// 503) are not remembered: the provider retries those. It holds at most
// max ids, dropping the least recently used; past that, downstream
// deduplication still makes a second write harmless. Safe for concurrent use.
type webhookIDs struct {
	mu      sync.Mutex
	max     int
	order   *list.List // of *idEntry, most recent first
	index   map[string]*list.Element
	flights map[string]chan struct{}
}

// idEntry is one remembered webhook-id. refusal is nil when the delivery
// was accepted, else the 400 it was answered.
type idEntry struct {
	key     string
	refusal *answer
}

func newWebhookIDs(max int) *webhookIDs {
	return &webhookIDs{max: max, order: list.New(), index: make(map[string]*list.Element), flights: map[string]chan struct{}{}}
}

// claim returns the remembered answer of key (known), or a channel that is
// closed when the delivery of key now being handled ends (wait; claim
// again then), or neither: the caller now handles key and must call done
// exactly once.
func (w *webhookIDs) claim(key string) (e idEntry, known bool, wait <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if el, ok := w.index[key]; ok {
		w.order.MoveToFront(el)
		return *el.Value.(*idEntry), true, nil
	}
	if ch, ok := w.flights[key]; ok {
		return idEntry{}, false, ch
	}
	w.flights[key] = make(chan struct{})
	return idEntry{}, false, nil
}

// done ends the caller's claim on key. With final, the delivery's answer
// is remembered: refusal nil for accepted, else its 400.
func (w *webhookIDs) done(key string, final bool, refusal *answer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.flights[key]; ok {
		close(ch)
		delete(w.flights, key)
	}
	if !final {
		return
	}
	if el, ok := w.index[key]; ok {
		el.Value.(*idEntry).refusal = refusal
		w.order.MoveToFront(el)
		return
	}
	w.index[key] = w.order.PushFront(&idEntry{key: key, refusal: refusal})
	for w.order.Len() > w.max {
		old := w.order.Back()
		w.order.Remove(old)
		delete(w.index, old.Value.(*idEntry).key)
	}
}
