package app

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// chromium returns the browser to drive: CHROMIUM_PATH, else chromium on
// PATH (scripts/chromium.sh installs Debian's). Under make test a missing
// browser fails the test.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("REVIEWPIPE_INTEGRATION") == "1" {
		t.Fatal("no Chromium found: run scripts/chromium.sh (make test does), or set CHROMIUM_PATH")
	}
	t.Skip("browser test: needs Chromium (scripts/chromium.sh) and the stack (make test)")
	return ""
}

// The web page in a real headless Chromium: it shows a movie's reviews with
// "last updated" and the stale notice, a review written through the real
// sink appears without a reload, "Request latest" shows the queued request,
// and the operator view asks for the operator token, says when it is
// wrong, lists the providers with the right one and keeps it for the tab.
// A screenshot goes to tests/artifacts/.
func TestWebPageInChromium(t *testing.T) {
	const opsToken = "page-test-ops-token"
	f := newFixture(t, Config{OpsToken: opsToken})
	browser := chromium(t)
	f.startSink(t)
	const movie = "tt0110912"
	first := mkReview("generic", "page-1", movie, 1)
	first.Title, first.Author, first.Body = "A royale with cheese", "Vincent", "They call it a royale with cheese."
	f.produce(t, review.Event{Op: review.OpUpsert, Review: first})
	testenv.Eventually(t, 30*time.Second, func() error {
		_, err := f.api.store.Review(context.Background(), first.ID)
		return err
	})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profileDir(t)),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	var console []string
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(func(format string, args ...any) {
		console = append(console, fmt.Sprintf(format, args...))
	}))
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, actions...); err != nil {
			shot(t, ctx, "web-page-failed.png")
			t.Fatalf("%s: %v\n%s", what, err, strings.Join(console, "\n"))
		}
	}

	var lastUpdated, notice, liveStatus string
	run("open the page",
		chromedp.Navigate(f.url+"/?movie="+movie),
		chromedp.WaitVisible(`#reviews li[data-id="`+first.ID+`"]`, chromedp.ByQuery),
		chromedp.Poll(`document.getElementById("live-status").textContent === "live"`, nil, chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.Text("#last-updated", &lastUpdated, chromedp.ByQuery),
		chromedp.Text("#notice", &notice, chromedp.ByQuery),
		chromedp.Text("#live-status", &liveStatus, chromedp.ByQuery),
		// A marker that a reload would wipe.
		chromedp.Evaluate(`window.__noReload = 42`, nil),
	)
	if lastUpdated == "" || lastUpdated == "—" || lastUpdated == "never" {
		t.Fatalf("last updated shows %q", lastUpdated)
	}
	// No poller has written provider health here: every provider is down
	// and the page says the reviews may be out of date.
	if !strings.Contains(notice, "out of date") {
		t.Fatalf("stale notice %q", notice)
	}

	// A new review, through the real sink, appears without a reload.
	second := mkReview("cinescore", "page-2", movie, 5)
	second.Title, second.Author = "Zed's dead", "Butch"
	f.produce(t, review.Event{Op: review.OpUpsert, Review: second})
	var marker int
	var titles []string
	run("see the new review live",
		chromedp.WaitVisible(`#reviews li[data-id="`+second.ID+`"]`, chromedp.ByQuery),
		chromedp.Evaluate(`window.__noReload`, &marker),
		chromedp.Evaluate(`[...document.querySelectorAll("#reviews li .rtitle")].map(e => e.textContent)`, &titles),
	)
	if marker != 42 {
		t.Fatal("the page reloaded to show the new review")
	}
	if strings.Join(titles, "|") != "Zed's dead|A royale with cheese" {
		t.Fatalf("reviews shown %q, want the newer first", titles)
	}

	// "Request latest" queues a refresh and says so with its id.
	var status string
	run("request latest",
		chromedp.Click("#refresh-btn", chromedp.ByQuery),
		chromedp.Poll(`document.getElementById("refresh-status").textContent.startsWith("Queued")`, nil, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Text("#refresh-status", &status, chromedp.ByQuery),
	)
	if !strings.Contains(status, "rr_") {
		t.Fatalf("refresh status %q, want the request id", status)
	}
	var requestID string
	if err := f.st.DB.QueryRow(context.Background(), `SELECT request_id FROM refresh_requests WHERE movie_id = $1`, movie).Scan(&requestID); err != nil || !strings.Contains(status, requestID) {
		t.Fatalf("refresh status %q, stored request %q (%v)", status, requestID, err)
	}

	// The operator view asks for the token; a wrong one is said to be
	// wrong; with the right one it lists every provider.
	var auth string
	run("operator view asks for the token",
		chromedp.Poll(`!document.getElementById("ops-token-form").hidden && !document.getElementById("ops-auth").hidden`, nil, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Text("#ops-auth", &auth, chromedp.ByQuery),
	)
	if !strings.Contains(auth, "needs the operator token") {
		t.Fatalf("operator view says %q, want it to ask for the token", auth)
	}
	run("a wrong token",
		chromedp.SendKeys("#ops-token-input", "not-the-token", chromedp.ByQuery),
		chromedp.Click("#ops-token-form button", chromedp.ByQuery),
		chromedp.Poll(`document.getElementById("ops-auth").textContent.includes("wrong")`, nil, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Text("#ops-auth", &auth, chromedp.ByQuery),
	)
	if !strings.Contains(auth, "wrong") {
		t.Fatalf("after a wrong token the operator view says %q", auth)
	}
	var providers []string
	var kept string
	run("the right token",
		chromedp.SendKeys("#ops-token-input", opsToken, chromedp.ByQuery),
		chromedp.Click("#ops-token-form button", chromedp.ByQuery),
		chromedp.Poll(`document.querySelectorAll("#ops-table tbody tr").length >= 3 && document.getElementById("ops-token-form").hidden`, nil, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Evaluate(`[...document.querySelectorAll("#ops-table tbody tr")].map(r => r.dataset.provider)`, &providers),
		chromedp.Evaluate(`sessionStorage.getItem("reviewpipe.opsToken")`, &kept),
	)
	if strings.Join(providers, ",") != "cinescore,generic,reelpulse" {
		t.Fatalf("operator view providers %v", providers)
	}
	if kept != opsToken {
		t.Fatalf("sessionStorage holds %q, want the token", kept)
	}
	shot(t, ctx, "web-page.png")
	// The tab keeps it: after a reload the view fills without asking.
	run("reload keeps the token for the tab",
		chromedp.Reload(),
		chromedp.Poll(`document.querySelectorAll("#ops-table tbody tr").length >= 3 && document.getElementById("ops-token-form").hidden`, nil, chromedp.WithPollingTimeout(10*time.Second)),
	)
}

// shot saves a full-page screenshot under tests/artifacts/ (gitignored).
// profileDir is Chromium's user data directory for one test. It is not
// t.TempDir: Chromium's helper processes can still be flushing the profile
// for a moment after the browser is cancelled, and t.TempDir fails the test
// when its removal meets a directory that is not yet empty. The removal is
// retried for a few seconds instead, and a directory left behind is logged.
func profileDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "reviewpipe-chromium-")
	if err != nil {
		t.Fatalf("chromium profile directory: %v", err)
	}
	t.Cleanup(func() {
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
		}
		t.Logf("chromium profile %s left behind: %v", dir, err)
	})
	return dir
}

func shot(t *testing.T, ctx context.Context, name string) {
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	dir := filepath.Join("..", "..", "..", "..", "tests", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	abs, _ := filepath.Abs(p)
	t.Logf("screenshot: %s", abs)
}
