package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/schemas"
)

func getJSON(url string, v any) (int, error) {
	res, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, err
	}
	if v != nil && res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, v); err != nil {
			return res.StatusCode, fmt.Errorf("not JSON: %q", b)
		}
	}
	return res.StatusCode, nil
}

// The thin path, end to end through the real binaries, Kafka and
// PostgreSQL: a signed generic webhook becomes a review the API serves.
func TestThinPath(t *testing.T) {
	st := testenv.New(t)
	receiver := startService(t, st, "receiver", "RECEIVER_ADDR", secretEnv()...)
	startService(t, st, "processor", "PROCESSOR_ADDR")
	startService(t, st, "sink", "SINK_ADDR")
	api := startService(t, st, "api", "API_ADDR")

	movie := "tt0068646"
	id := "thin-" + testenv.RandomID()
	body := `{"type":"review.upserted","data":{"review_id":"` + id + `","version":2,"updated_at":"2026-11-20T10:00:00Z",
		"movie":{"imdb_id":"` + movie + `","title":"The Godfather"},"author":"Eve","title":"An offer",
		"body":"Can't refuse it.","rating":{"value":9,"scale":10},"language":"en","url":"https://example.com/` + id + `"}}`

	// A wrongly signed delivery first: 401, and nothing of it may surface.
	if code := postWebhook(t, receiver.URL(), "generic", "bad-"+id, body, []byte("wrong key")); code != http.StatusUnauthorized {
		t.Fatalf("wrongly signed webhook answered %d, want 401", code)
	}
	sent := time.Now()
	if code := postWebhook(t, receiver.URL(), "generic", "ok-"+id, body, testSecret); code/100 != 2 {
		t.Fatalf("signed webhook answered %d, want 2xx", code)
	}

	var rv map[string]any
	testenv.Eventually(t, 10*time.Second, func() error {
		code, err := getJSON(api.URL()+"/v1/reviews/generic:"+id, &rv)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET /v1/reviews answered %d", code)
		}
		return nil
	})
	visible := time.Since(sent)
	t.Logf("webhook to readable review: %s", visible)
	if visible > 2*time.Second {
		t.Errorf("review readable after %s, want within 2s", visible)
	}
	want := map[string]any{"id": "generic:" + id, "provider": "generic", "external_id": id, "movie_id": movie,
		"author": "Eve", "rating": float64(90), "title": "An offer", "language": "en", "version": float64(2)}
	for k, v := range want {
		if rv[k] != v {
			t.Errorf("review %s = %v, want %v", k, rv[k], v)
		}
	}
	b, _ := json.Marshal(rv)
	if err := schemas.Validate(schemas.Review, b); err != nil {
		t.Errorf("API review does not match the schema: %v", err)
	}

	var list struct {
		MovieID string           `json:"movie_id"`
		Reviews []map[string]any `json:"reviews"`
	}
	if code, err := getJSON(api.URL()+"/v1/movies/"+movie+"/reviews", &list); err != nil || code != http.StatusOK {
		t.Fatalf("GET movie reviews: %d %v", code, err)
	}
	if list.MovieID != movie || len(list.Reviews) != 1 || list.Reviews[0]["id"] != "generic:"+id {
		t.Fatalf("movie reviews = %+v, want exactly the one review", list)
	}
	// The older version, delivered late, changes nothing.
	old := `{"type":"review.upserted","data":{"review_id":"` + id + `","version":1,"updated_at":"2026-11-19T10:00:00Z",
		"movie":{"imdb_id":"` + movie + `","title":"The Godfather"},"title":"stale"}}`
	if code := postWebhook(t, receiver.URL(), "generic", "old-"+id, old, testSecret); code/100 != 2 {
		t.Fatalf("old version answered %d", code)
	}
	// A delete at a higher version removes it.
	del := `{"type":"review.deleted","data":{"review_id":"` + id + `","version":3,"updated_at":"2026-11-21T10:00:00Z"}}`
	if code := postWebhook(t, receiver.URL(), "generic", "del-"+id, del, testSecret); code/100 != 2 {
		t.Fatalf("delete answered %d", code)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		code, err := getJSON(api.URL()+"/v1/reviews/generic:"+id, nil)
		if err != nil {
			return err
		}
		if code != http.StatusNotFound {
			return fmt.Errorf("deleted review answered %d, want 404", code)
		}
		return nil
	})
	var version int64
	if err := st.DB.QueryRow(t.Context(), `SELECT version FROM reviews WHERE id = $1`, "generic:"+id).Scan(&version); err != nil || version != 3 {
		t.Fatalf("store row version = %d (%v), want the delete's 3 kept as a tombstone", version, err)
	}
}
