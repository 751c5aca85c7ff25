// Package console is the operator console of DESIGN §12: a small web application
// served by the router at GET /console/, and the admin routes it needs beyond the
// message API of DESIGN §6 (agents through CAMS, an overview of counts, a dead-letter
// listing with a count for bulk-replay confirmations).
//
// The assets are plain HTML, CSS and JavaScript modules embedded with go:embed: no
// CDN, no build step, nothing fetched from outside the router. Every page is served
// with a strict Content-Security-Policy (scripts only from the router itself, no
// inline script or style), so a hostile string that slipped past the console's
// escaping still could not run. The console renders every string with textContent,
// never as HTML: agent addresses and error texts are hostile input.
//
// Authentication is the router's: the console keeps an admin key in the browser's
// sessionStorage and sends it as "Authorization: Bearer" on every API call. There
// are no cookies, so cross-site requests carry no credentials (CSRF-safe by
// construction). The assets themselves are open (see OpenPaths): they hold no data.
package console

import (
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed assets
var assets embed.FS

// Prefix is where the console is served.
const Prefix = "/console/"

// CSP is the Content-Security-Policy of every console asset: nothing but the
// router's own scripts, styles and API; no inline code, no frames, no forms posting
// elsewhere (W3C CSP Level 3).
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// OpenPaths reports the console's asset paths (GET /console and everything under
// /console/), which stay open when ADMIN_API_KEYS is set: they are static files
// holding no data, and the page must load to ask for the key. The API routes the
// console calls are not open.
func OpenPaths(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return r.URL.Path == "/console" || strings.HasPrefix(r.URL.Path, Prefix)
}

// contentTypes are set explicitly rather than from the system's MIME table, so an
// odd /etc/mime.types cannot serve the JavaScript modules with a type the browser
// refuses under nosniff.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".txt":  "text/plain; charset=utf-8",
}

// assetHandler serves the embedded files. "/console/" is index.html; an unknown file
// is a 404 with the contract's error body.
func assetHandler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		if name == "" {
			name = "index.html"
		}
		name = path.Clean(name)
		b, err := fs.ReadFile(sub, name)
		if err != nil || strings.HasPrefix(name, ".") {
			notFound(w, r)
			return
		}
		ext := path.Ext(name)
		ct := contentTypes[ext]
		if ct == "" {
			ct = mime.TypeByExtension(ext)
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		h := w.Header()
		setSecurityHeaders(h)
		h.Set("Content-Type", ct)
		// Assets change with the binary; revalidate rather than cache stale code.
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(b)
		}
	})
}

func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}
