package app

import (
	"container/list"
	"sync"
)

// recentIDs remembers the most recent webhook-ids, so a redelivery is
// answered 2xx without a second write. It is an optimization: downstream
// deduplication makes a second write harmless anyway. Safe for concurrent use.
type recentIDs struct {
	mu    sync.Mutex
	max   int
	order *list.List
	index map[string]*list.Element
}

func newRecentIDs(max int) *recentIDs {
	return &recentIDs{max: max, order: list.New(), index: make(map[string]*list.Element, max)}
}

func (r *recentIDs) Has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.index[id]
	return ok
}

func (r *recentIDs) Add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.index[id]; ok {
		r.order.MoveToFront(e)
		return
	}
	r.index[id] = r.order.PushFront(id)
	for r.order.Len() > r.max {
		old := r.order.Back()
		r.order.Remove(old)
		delete(r.index, old.Value.(string))
	}
}
