package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"testing"
	"time"
)

// checkAnalytics asserts that analytics' per-movie statistics equal the
// store's live reviews: for every movie, the reviews, the rated reviews,
// the sum of ratings and the histogram's total. It runs once analytics'
// lag is 0, so both have applied every change of the normalized topic.
func (e *env) checkAnalytics(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := e.db.Query(ctx, `
		WITH truth AS (
			SELECT movie_id, count(*) AS reviews, count(rating) AS ratings, coalesce(sum(rating), 0) AS rating_sum
			FROM reviews WHERE NOT deleted AND movie_id IS NOT NULL GROUP BY movie_id)
		SELECT coalesce(t.movie_id, a.movie_id),
		       coalesce(t.reviews, 0), coalesce(t.ratings, 0), coalesce(t.rating_sum, 0),
		       coalesce(a.reviews, 0), coalesce(a.ratings, 0), coalesce(a.rating_sum, 0),
		       coalesce((SELECT sum(x) FROM unnest(a.histogram) AS x), 0)
		FROM truth t FULL JOIN analytics_movie_ratings a USING (movie_id)
		ORDER BY 1`)
	if err != nil {
		t.Fatalf("compare analytics with the store: %v", err)
	}
	defer rows.Close()
	var movies, live int64
	var problems []string
	for rows.Next() {
		var movie string
		var want, got [3]int64
		var histogram int64
		if err := rows.Scan(&movie, &want[0], &want[1], &want[2], &got[0], &got[1], &got[2], &histogram); err != nil {
			t.Fatal(err)
		}
		movies++
		live += want[0]
		if want != got || histogram != got[1] {
			problems = append(problems, fmt.Sprintf("movie %s: analytics has reviews, ratings, sum %v (histogram total %d); the store's live reviews give %v",
				movie, got, histogram, want))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("analytics: %d movies, %d live reviews checked against the store; %d problems", movies, live, len(problems))
	if live == 0 {
		t.Errorf("no live review in the store: the analytics check proved nothing")
	}
	reportProblems(t, problems, 20)
}

// checkAPI reads a sample of the scenario's reviews back through the read
// API: a live review answers 200 with the store's version, a deleted one
// 404.
func (e *env) checkAPI(t *testing.T, api *proc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := e.storeRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, len(rows))
	for id := range rows {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if len(ids) > 40 {
		ids = ids[:40]
	}
	client := &http.Client{Timeout: 5 * time.Second}
	var live, deleted int
	for _, id := range ids {
		want := rows[id]
		res, err := client.Get(api.url() + "/v1/reviews/" + url.PathEscape(id))
		if err != nil {
			t.Fatalf("GET review %s: %v", id, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		switch {
		case want.deleted && res.StatusCode == http.StatusNotFound:
			deleted++
		case want.deleted:
			t.Errorf("review %s is deleted in the store; the api answers %d %s", id, res.StatusCode, body)
		case res.StatusCode != http.StatusOK:
			t.Errorf("review %s is live in the store; the api answers %d %s", id, res.StatusCode, body)
		default:
			var got struct {
				Version int64 `json:"version"`
			}
			if err := json.Unmarshal(body, &got); err != nil || got.Version != want.version {
				t.Errorf("review %s: the api answers version %d (%v), the store has %d", id, got.Version, err, want.version)
				continue
			}
			live++
		}
	}
	t.Logf("api: %d live and %d deleted reviews read back as the store has them", live, deleted)
	if live == 0 {
		t.Errorf("no live review read through the api: the check proved nothing")
	}
}
