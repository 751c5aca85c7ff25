// Package httpapi holds what every msgrouter HTTP server shares: the contract's error
// body, JSON answers, a router whose unknown routes and wrong methods also answer with
// the error body, the health routes and a server with sane timeouts.
package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Error codes of the contract (DESIGN §2).
const (
	CodeInvalidRequest       = "INVALID_REQUEST"
	CodeUnauthorized         = "UNAUTHORIZED"
	CodeForbidden            = "FORBIDDEN"
	CodeNotFound             = "NOT_FOUND"
	CodeMethodNotAllowed     = "METHOD_NOT_ALLOWED"
	CodeConflict             = "CONFLICT"
	CodePayloadTooLarge      = "PAYLOAD_TOO_LARGE"
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
	CodeRateLimited          = "RATE_LIMITED"
	CodeUnavailable          = "UNAVAILABLE"
	CodeInternal             = "INTERNAL"
)

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

// WriteJSON answers with status and v encoded as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, http.StatusInternalServerError, CodeInternal, "error encoding the response")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// WriteError answers with the contract's error body.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	b, _ := json.Marshal(ErrorBody{ErrorCode: code, Message: message})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// WriteRetryAfter sets Retry-After in whole seconds (at least 1) and answers with the
// error body.
func WriteRetryAfter(w http.ResponseWriter, status int, code, message string, after time.Duration) {
	secs := int((after + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	WriteError(w, status, code, message)
}

// Mux is an http.ServeMux whose own answers (404 for unknown routes, 405 for wrong
// methods) carry the contract's error body instead of plain text.
type Mux struct {
	mux      *http.ServeMux
	patterns []string
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{mux: http.NewServeMux()} }

// Handle registers h for a Go 1.22 pattern such as "POST /v1/messages".
func (m *Mux) Handle(pattern string, h http.Handler) {
	m.mux.Handle(pattern, h)
	m.patterns = append(m.patterns, pattern)
}

// HandleFunc registers f for pattern.
func (m *Mux) HandleFunc(pattern string, f http.HandlerFunc) { m.Handle(pattern, f) }

// Patterns lists the registered patterns, in registration order (the OpenAPI test
// checks every one is documented).
func (m *Mux) Patterns() []string { return append([]string(nil), m.patterns...) }

func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := m.mux.Handler(r)
	if pattern != "" {
		m.mux.ServeHTTP(w, r)
		return
	}
	// No route matched: let the ServeMux decide (404, 405 with Allow, or a redirect
	// to the clean path) and rewrite its plain-text error as the contract's body.
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	for k, v := range rec.header {
		if k != "Content-Type" && k != "X-Content-Type-Options" && k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	switch rec.status {
	case http.StatusMethodNotAllowed:
		WriteError(w, rec.status, CodeMethodNotAllowed, "method "+r.Method+" is not allowed on "+r.URL.Path)
	case http.StatusNotFound, 0:
		WriteError(w, http.StatusNotFound, CodeNotFound, "no route for "+r.Method+" "+r.URL.Path)
	default:
		if rec.status >= 300 && rec.status < 400 {
			w.WriteHeader(rec.status)
			return
		}
		WriteError(w, rec.status, CodeInvalidRequest, http.StatusText(rec.status))
	}
}

type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return len(b), nil
}
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// Check is one readiness dependency: Check returns nil when it answers.
type Check struct {
	Name  string
	Check func(r *http.Request) error
}

// HealthRoutes registers GET /health, /health/live and /health/ready.
func HealthRoutes(m *Mux, version string, checks ...Check) {
	live := func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": version})
	}
	m.HandleFunc("GET /health", live)
	m.HandleFunc("GET /health/live", live)
	m.HandleFunc("GET /health/ready", func(w http.ResponseWriter, r *http.Request) {
		deps := make(map[string]string, len(checks))
		for _, c := range checks {
			if err := c.Check(r); err != nil {
				deps[c.Name] = err.Error()
				WriteJSON(w, http.StatusServiceUnavailable, map[string]any{
					"status": "unavailable", "errorCode": CodeUnavailable,
					"message": c.Name + " is not ready: " + err.Error(), "failing": c.Name,
				})
				return
			}
			deps[c.Name] = "ok"
		}
		WriteJSON(w, http.StatusOK, map[string]any{"status": "ok", "version": version, "dependencies": deps})
	})
}

// NewServer returns an http.Server with timeouts that keep slow or idle clients from
// holding connections forever, and a header size limit. errLog receives the server's
// own errors (TLS handshakes, panics).
func NewServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
