package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/store"
)

func movieOf(i int) string { return fmt.Sprintf("tt%07d", 1000+i%5) }

// Every change of the provider's feed reaches reviews.raw.v1 by polling, as
// the provider's bytes untouched, keyed {provider}:{review_id}, once each
// (the overlap window re-reads without re-publishing); an event the adapter
// refuses is dead-lettered; the cursor, health and metrics say where sync stands.
func TestEveryChangeArrivesByPolling(t *testing.T) {
	st := testenv.New(t)
	f := newFakeGeneric(t, 50)
	events := map[string][]byte{}
	for i := range 130 {
		id := fmt.Sprintf("r%03d", i%90) // 40 reviews change twice
		b := f.add(id, movieOf(i), i == 120)
		events[fmt.Sprintf("%s:%d", id, f.versions[id])] = b
	}
	bad := []byte(`{"type":"review.upserted","data":{"review_id":"bad1","version":1,"updated_at":"yesterday","movie":{"imdb_id":"tt0001000","title":"x"}}}`)
	f.set(func(f *fakeGeneric) { f.addRaw("bad1", "tt0001000", 1, bad) })
	r := start(t, st, testConfig(f, "a"))

	check := func() {
		t.Helper()
		want := f.want()
		delete(want, "bad1:1")
		testenv.Eventually(t, 30*time.Second, func() error {
			if m := missing(want, changesOf(t, readRaw(t, st), envelope.SourcePoll)); len(m) > 0 {
				return fmt.Errorf("%d of %d changes not published yet, e.g. %v", len(m), len(want), m[:min(3, len(m))])
			}
			return nil
		})
	}
	check()
	// Changes made while the poller runs arrive too.
	for i := range 45 {
		id := fmt.Sprintf("r%03d", 80+i)
		b := f.add(id, movieOf(i), false)
		events[fmt.Sprintf("%s:%d", id, f.versions[id])] = b
	}
	check()

	recs := readRaw(t, st)
	counts := changesOf(t, recs, "")
	for k, n := range counts {
		if n != 1 {
			t.Errorf("change %s published %d times, want once (the overlap must not re-publish)", k, n)
		}
	}
	for _, rec := range recs {
		if rec.env.Provider != "generic" || rec.source != "poll" || rec.env.EventID != rec.eventID || rec.env.DeliveryID == "" {
			t.Fatalf("record %s: envelope %+v, source header %q", rec.key, rec.env, rec.source)
		}
		var ev provider.GenericEvent
		if err := json.Unmarshal(rec.env.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		if rec.key != "generic:"+ev.Data.ReviewID {
			t.Fatalf("record key %q, want generic:%s", rec.key, ev.Data.ReviewID)
		}
		if b := events[fmt.Sprintf("%s:%d", ev.Data.ReviewID, ev.Data.Version)]; !bytes.Equal(rec.env.Payload, b) {
			t.Fatalf("record %s: payload %s is not the provider's event bytes untouched %s", rec.key, rec.env.Payload, b)
		}
	}

	// The refused event is a dead letter: its raw envelope with the reason.
	dls := readTopic(t, st, kafkax.TopicDLQ)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	var dl envelope.DeadLetter
	if err := json.Unmarshal(dls[0].Value, &dl); err != nil {
		t.Fatal(err)
	}
	raw, err := envelope.ParseRaw(dl.RecordBytes())
	if err != nil || dl.Stage != envelope.StagePoller || dl.Reason != "invalid_field" || !bytes.Equal(raw.Payload, bad) {
		t.Fatalf("dead letter %+v (raw %v)", dl, err)
	}

	// The saved cursor stands just past the feed's last record time.
	f.mu.Lock()
	wantCursor := f.feed[len(f.feed)-1].recorded.Add(time.Microsecond).Format(time.RFC3339Nano)
	f.mu.Unlock()
	testenv.Eventually(t, 10*time.Second, func() error {
		c, err := store.New(st.DB).Cursor(context.Background(), "generic", "live")
		if err != nil || c != wantCursor {
			return fmt.Errorf("cursor %q (%v), want %q", c, err, wantCursor)
		}
		h := health(t, st, "generic")
		if h.Status != HealthOK || h.BreakerState != "closed" || time.Since(h.LastSuccessAt) > 10*time.Second || h.LastError != "" {
			return fmt.Errorf("health %+v", h)
		}
		return nil
	})
	if n := gauge(t, r.reg, "reviewpipe_poller_events_published_total", map[string]string{"provider": "generic", "source": "poll"}); n != float64(len(recs)) {
		t.Errorf("events published metric %v, want %d", n, len(recs))
	}
	if lag := gauge(t, r.reg, "reviewpipe_poller_cursor_lag_seconds", map[string]string{"provider": "generic"}); lag < 0 || lag > 5 {
		t.Errorf("cursor lag %vs while caught up, want a few hundred ms", lag)
	}
	if n := gauge(t, r.reg, "reviewpipe_poller_lease_held", map[string]string{"provider": "generic"}); n != 1 {
		t.Errorf("lease held %v, want 1", n)
	}
	if n := gauge(t, r.reg, "reviewpipe_dead_letters_total", map[string]string{"provider": "generic", "reason": "invalid_field"}); n != 1 {
		t.Errorf("dead letters metric %v, want 1", n)
	}
}

// Refresh requests publish a movie's current state (source refresh);
// backfill requests pull the feed since a time (source backfill) and record
// their progress in backfill_jobs; requests that can never be served are
// refused visibly.
func TestRefreshAndBackfillRequests(t *testing.T) {
	st := testenv.New(t)
	f := newFakeGeneric(t, 50)
	for i := range 100 {
		f.add(fmt.Sprintf("r%03d", i%70), movieOf(i), false)
	}
	cfg := testConfig(f, "a")
	cfg.Interval = time.Hour // after the first pass, only the requests make requests
	r := start(t, st, cfg)
	testenv.Eventually(t, 30*time.Second, func() error {
		if m := missing(f.want(), changesOf(t, readRaw(t, st), envelope.SourcePoll)); len(m) > 0 {
			return fmt.Errorf("%d changes not polled yet", len(m))
		}
		return nil
	})
	now := time.Now().UTC()
	produce(t, st,
		envelope.SyncRequest{RequestID: "rf_1", Kind: envelope.SyncRefresh, MovieID: movieOf(1), RequestedAt: now},
		envelope.SyncRequest{RequestID: "rf_2", Kind: envelope.SyncRefresh, MovieID: movieOf(1), RequestedAt: now},
		envelope.SyncRequest{RequestID: "bf_1", Kind: envelope.SyncBackfill, Provider: "generic", Since: now.Add(-time.Hour), RequestedAt: now, RequestedBy: "test"},
		envelope.SyncRequest{RequestID: "bf_nope", Kind: envelope.SyncBackfill, Provider: "nope", Since: now.Add(-time.Hour), RequestedAt: now},
		envelope.SyncRequest{RequestID: "x_1", Kind: "reindex", RequestedAt: now},
	)
	// The current state of movie 1: the newest event of each of its reviews.
	wantRefresh := map[string]bool{}
	f.mu.Lock()
	latest := map[string]int64{}
	for _, e := range f.feed {
		if e.movieID == movieOf(1) {
			latest[e.reviewID] = e.version
		}
	}
	f.mu.Unlock()
	for id, v := range latest {
		wantRefresh[fmt.Sprintf("%s:%d", id, v)] = true
	}
	st2 := store.New(st.DB)
	testenv.Eventually(t, 30*time.Second, func() error {
		recs := readRaw(t, st)
		got := changesOf(t, recs, envelope.SourceRefresh)
		if m := missing(wantRefresh, got); len(m) > 0 || len(got) != len(wantRefresh) {
			return fmt.Errorf("refresh published %v, want %v", got, wantRefresh)
		}
		if m := missing(f.want(), changesOf(t, recs, envelope.SourceBackfill)); len(m) > 0 {
			return fmt.Errorf("backfill: %d changes not published yet", len(m))
		}
		b, err := st2.GetBackfill(context.Background(), "bf_1")
		if err != nil || b == nil || b.Status != store.StatusDone {
			return fmt.Errorf("backfill job %+v (%v), want done", b, err)
		}
		return nil
	})
	// Two refresh requests of one movie were served by one refresh.
	if n := changesOf(t, readRaw(t, st), envelope.SourceRefresh); len(n) != len(wantRefresh) {
		t.Errorf("refresh events %v", n)
	}
	var done int
	if err := st.DB.QueryRow(context.Background(), `SELECT count(*) FROM refresh_jobs WHERE status = 'done' AND events > 0`).Scan(&done); err != nil || done != 2 {
		t.Errorf("refresh_jobs done: %d (%v), want both requests", done, err)
	}
	b, _ := st2.GetBackfill(context.Background(), "bf_1")
	if b.Events != 100 || b.Pages < 5 || b.Cursor == "" || b.StartedAt.IsZero() || b.RequestedBy != "test" {
		t.Errorf("backfill progress %+v: want 100 events over at least 5 pages of 20", b)
	}
	nope, _ := st2.GetBackfill(context.Background(), "bf_nope")
	if nope == nil || nope.Status != store.StatusFailed || nope.Error == "" {
		t.Errorf("backfill of an unknown provider: %+v, want failed with a reason", nope)
	}
	dls := readTopic(t, st, kafkax.TopicDLQ)
	if len(dls) != 1 || !bytes.Contains(dls[0].Value, []byte("invalid_sync_request")) {
		t.Errorf("dead letters %d, want the one unknown request kind", len(dls))
	}
	if n := gauge(t, r.reg, "reviewpipe_poller_backfill_events_total", map[string]string{"provider": "generic"}); n != 100 {
		t.Errorf("backfill events metric %v, want 100", n)
	}
	if n := gauge(t, r.reg, "reviewpipe_poller_backfill_jobs_finished_total", map[string]string{"provider": "generic", "status": "done"}); n != 1 {
		t.Errorf("backfill finished metric %v, want 1", n)
	}
}

// Under a 50% error rate and then a 429 storm, the poller stays within the
// provider's limit in every second (it follows X-RateLimit-Limit below its
// own configured rate, backs off after errors, obeys Retry-After), a storm
// of 429s does not open the breaker, and every change still arrives.
func TestRateStaysWithinLimitUnderErrorsAndStorms(t *testing.T) {
	st := testenv.New(t)
	const limit = 5
	f := newFakeGeneric(t, limit)
	for i := range 300 {
		f.add(fmt.Sprintf("r%03d", i), movieOf(i), false)
	}
	cfg := testConfig(f, "a")
	cfg.Providers[0].Rate = 50 // above the published limit: the headers must bring it down
	cfg.PageSize = 5
	cfg.Interval = 100 * time.Millisecond
	cfg.BreakerFailures = 8
	f.set(func(f *fakeGeneric) { f.errorRate = 0.5 })
	r := start(t, st, cfg)

	testenv.Eventually(t, 30*time.Second, func() error {
		if n := len(f.requests()); n < 30 {
			return fmt.Errorf("%d requests so far", n)
		}
		return nil
	})
	f.set(func(f *fakeGeneric) { f.errorRate, f.storm = 0, true })
	opensBefore := gauge(t, r.reg, "reviewpipe_poller_breaker_transitions_total", map[string]string{"provider": "generic", "state": "open"})
	stormStart := time.Now()
	testenv.Eventually(t, 30*time.Second, func() error {
		if time.Since(stormStart) < 4*time.Second {
			return errors.New("storming")
		}
		return nil
	})
	f.set(func(f *fakeGeneric) { f.storm = false })
	opensAfter := gauge(t, r.reg, "reviewpipe_poller_breaker_transitions_total", map[string]string{"provider": "generic", "state": "open"})
	testenv.Eventually(t, 60*time.Second, func() error {
		if m := missing(f.want(), changesOf(t, readRaw(t, st), "")); len(m) > 0 {
			return fmt.Errorf("%d changes not published yet", len(m))
		}
		return nil
	})

	reqs := f.requests()
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].start.Before(reqs[j].start) })
	var storm, errs, limited []fakeRequest
	for _, q := range reqs {
		switch q.code {
		case 429:
			storm = append(storm, q)
		case 500:
			errs = append(errs, q)
		}
		if q.code == 429 && q.start.Before(stormStart) {
			limited = append(limited, q)
		}
	}
	secs := perSecond(reqs)
	busiest := 0
	for _, n := range secs {
		busiest = max(busiest, n)
	}
	t.Logf("%d requests (%d answered 500, %d answered 429 in the storm, %d rate-limited outside it); busiest second %d, busiest 1s window %d; limit %d/s",
		len(reqs), len(errs), len(storm), len(limited), busiest, maxInWindow(reqs, time.Second), limit)
	if w := maxInWindow(reqs, time.Second); w > limit {
		t.Errorf("%d requests within one second, over the provider's limit of %d", w, limit)
	}
	if len(errs) == 0 {
		t.Error("the error phase produced no 500s: the test did not test anything")
	}
	if len(limited) > 0 {
		t.Errorf("%d requests were rate limited outside the storm: the budget did not keep to the limit", len(limited))
	}
	// During the storm every 429 carried Retry-After: 1: at most one a second.
	if w := maxInWindow(storm, time.Second); w > 1 || len(storm) < 2 {
		t.Errorf("storm: %d requests answered 429, up to %d within a second; want at most 1 a second", len(storm), w)
	}
	if opensAfter != opensBefore {
		t.Errorf("the breaker opened during a 429 storm (%v -> %v transitions to open)", opensBefore, opensAfter)
	}
}

// A provider that is down opens the breaker (health down), which lets only
// a probe through now and then; when it recovers, the breaker closes, health
// is ok again and the changes made meanwhile arrive.
func TestBreakerOpensWhenDownAndClosesOnRecovery(t *testing.T) {
	st := testenv.New(t)
	f := newFakeGeneric(t, 50)
	for i := range 30 {
		f.add(fmt.Sprintf("r%03d", i), movieOf(i), false)
	}
	r := start(t, st, testConfig(f, "a"))
	testenv.Eventually(t, 30*time.Second, func() error {
		if h := health(t, st, "generic"); h.Status != HealthOK {
			return fmt.Errorf("health %+v", h)
		}
		return nil
	})
	f.set(func(f *fakeGeneric) { f.down = true })
	downAt := time.Now()
	testenv.Eventually(t, 30*time.Second, func() error {
		h := health(t, st, "generic")
		if h.Status != HealthDown || h.BreakerState != "open" || h.LastError == "" {
			return fmt.Errorf("health %+v, want down with the breaker open", h)
		}
		if s := gauge(t, r.reg, "reviewpipe_poller_breaker_state", map[string]string{"provider": "generic"}); s != 2 {
			return fmt.Errorf("breaker state metric %v, want 2 (open)", s)
		}
		return nil
	})
	for i := range 20 {
		f.add(fmt.Sprintf("late%02d", i), movieOf(i), false)
	}
	// Open for a while: only half-open probes, one per breaker timeout (1s).
	openAt := time.Now()
	testenv.Eventually(t, 30*time.Second, func() error {
		if time.Since(openAt) < 3*time.Second {
			return errors.New("waiting")
		}
		return nil
	})
	var whileOpen int
	for _, q := range f.requests() {
		if q.start.After(openAt) {
			whileOpen++
		}
	}
	if whileOpen > 4 {
		t.Errorf("%d requests in 3s with the breaker open, want at most one probe a second", whileOpen)
	}
	f.set(func(f *fakeGeneric) { f.down = false })
	upAt := time.Now()
	testenv.Eventually(t, 30*time.Second, func() error {
		h := health(t, st, "generic")
		if h.Status != HealthOK || h.BreakerState != "closed" || h.LastError != "" {
			return fmt.Errorf("health %+v, want ok with the breaker closed", h)
		}
		if m := missing(f.want(), changesOf(t, readRaw(t, st), envelope.SourcePoll)); len(m) > 0 {
			return fmt.Errorf("%d changes not published yet", len(m))
		}
		return nil
	})
	t.Logf("down %.1fs; %d requests while open 3s; recovered %.1fs after the provider", openAt.Sub(downAt).Seconds(), whileOpen, time.Since(upAt).Seconds())
	if s := gauge(t, r.reg, "reviewpipe_poller_breaker_state", map[string]string{"provider": "generic"}); s != 0 {
		t.Errorf("breaker state metric %v after recovery, want 0", s)
	}
}

// A poller killed after Kafka acknowledged a page and before the cursor
// covering it was saved loses nothing: the next poller (after the dead one's
// lease expires) re-reads from the saved cursor.
func TestKilledBetweenPublishAndCursorSaveReReads(t *testing.T) {
	st := testenv.New(t)
	f := newFakeGeneric(t, 50)
	for i := range 100 {
		f.add(fmt.Sprintf("r%03d", i), movieOf(i), false)
	}
	cfg := testConfig(f, "a")
	cfg.Overlap = -1 // none: the re-read is exactly from the saved cursor
	pages := 0
	cfg.Hooks.BeforeCursorSave = func(provider, stream string) error {
		if pages++; pages == 3 {
			return errors.New("killed")
		}
		return nil
	}
	a := start(t, st, cfg)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the poller was not killed at its third page")
	}
	if a.err == nil || a.err.Error() != "aborted: killed" {
		t.Fatalf("Run returned %v, want the kill", a.err)
	}
	killedAt := time.Now()
	f.mu.Lock()
	page2End := f.feed[39].recorded.Add(time.Microsecond).Format(time.RFC3339Nano)
	f.mu.Unlock()
	c, _ := store.New(st.DB).Cursor(context.Background(), "generic", "live")
	if c != page2End {
		t.Fatalf("saved cursor %q, want the end of page 2 %q", c, page2End)
	}
	published := changesOf(t, readRaw(t, st), "")
	if len(published) != 60 {
		t.Fatalf("%d changes published before the kill, want pages 1 to 3 (60)", len(published))
	}

	cfgB := testConfig(f, "b")
	cfgB.Overlap = -1
	start(t, st, cfgB)
	testenv.Eventually(t, 30*time.Second, func() error {
		if m := missing(f.want(), changesOf(t, readRaw(t, st), "")); len(m) > 0 {
			return fmt.Errorf("%d changes missing", len(m))
		}
		return nil
	})
	got := changesOf(t, readRaw(t, st), "")
	for i := range 100 {
		k := fmt.Sprintf("r%03d:1", i)
		want := 1
		if i >= 40 && i < 60 {
			want = 2 // page 3: published, not recorded, re-read
		}
		if got[k] != want {
			t.Errorf("change %s published %d times, want %d", k, got[k], want)
		}
	}
	// b waited for a's lease to expire: no request of b before then.
	for _, q := range f.requests() {
		if q.holder == "b" && q.start.Before(killedAt.Add(time.Second)) {
			t.Fatalf("b polled %s after the kill, while a's lease (3s) was still live", q.start.Sub(killedAt))
		}
	}
}

// Two poller replicas never poll one provider at once: one holds the lease,
// the other waits; when the holder stops, the other takes over.
func TestOneReplicaPollsAProviderAtATime(t *testing.T) {
	st := testenv.New(t)
	f := newFakeGeneric(t, 50)
	for i := range 50 {
		f.add(fmt.Sprintf("r%03d", i), movieOf(i), false)
	}
	ra, rb := start(t, st, testConfig(f, "a")), start(t, st, testConfig(f, "b"))
	holders := func() map[string]int {
		out := map[string]int{}
		for _, q := range f.requests() {
			out[q.holder]++
		}
		return out
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if h := holders(); h["a"]+h["b"] < 20 {
			return fmt.Errorf("requests by holder %v", h)
		}
		return nil
	})
	h := holders()
	if len(h) != 1 {
		t.Fatalf("requests by holder %v: both replicas polled", h)
	}
	first, second := ra, rb
	if h["b"] > 0 {
		first, second = rb, ra
	}
	if gauge(t, first.reg, "reviewpipe_poller_lease_held", map[string]string{"provider": "generic"}) != 1 ||
		gauge(t, second.reg, "reviewpipe_poller_lease_held", map[string]string{"provider": "generic"}) != 0 {
		t.Fatal("lease_held metrics do not show one holder")
	}
	first.stop()
	<-first.done
	f.add("after-handover", movieOf(0), false)
	testenv.Eventually(t, 30*time.Second, func() error {
		if len(holders()) != 2 {
			return fmt.Errorf("requests by holder %v: the second replica has not taken over", holders())
		}
		if m := missing(f.want(), changesOf(t, readRaw(t, st), "")); len(m) > 0 {
			return fmt.Errorf("%d changes missing", len(m))
		}
		return nil
	})
	// Never at once: every request of one holder ended before the other's began.
	reqs := f.requests()
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].start.Before(reqs[j].start) })
	var lastEnd = map[string]time.Time{}
	for _, q := range reqs {
		for other, end := range lastEnd {
			if other != q.holder && end.After(q.start) {
				t.Fatalf("%s polled at %s while %s's request ran until %s", q.holder, q.start, other, end)
			}
		}
		if q.end.After(lastEnd[q.holder]) {
			lastEnd[q.holder] = q.end
		}
	}
	f.mu.Lock()
	maxIn := f.maxIn
	f.mu.Unlock()
	if maxIn != 1 {
		t.Errorf("%d requests in flight at once, want 1", maxIn)
	}
}
