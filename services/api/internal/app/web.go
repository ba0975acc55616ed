package app

import (
	_ "embed"
	"net/http"
)

// The web page: one file with its CSS and JavaScript inline, so it needs
// no external asset.
//
//go:embed web/index.html
var indexHTML []byte

func (a *API) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	writeCached(w, r, "text/html; charset=utf-8", indexHTML, "no-cache")
}
