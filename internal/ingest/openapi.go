package ingest

import (
	_ "embed"
	"net/http"
)

// openAPI is the document served on /openapi.json. TestOpenAPICoversRoutes fails
// when a route of the Mux is missing from it.
//
//go:embed openapi.json
var openAPI []byte

// docsPage renders openAPI in the browser with a few lines of inline script: no CDN,
// nothing to fetch but the document itself.
//
//go:embed docs.html
var docsPage []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPI)
}

func serveDocs(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(docsPage)
}
