package camsserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/telemetry"
)

// Limits of the server's API.
const (
	MaxBodyBytes     = 64 << 10
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// inboxesPrefix is the path of one agent's mapping, the address appended.
const inboxesPrefix = "/v1/agent-inboxes/"

// HandlerConfig configures the reference server's HTTP handler.
type HandlerConfig struct {
	Store  *Store
	Logger *slog.Logger // Defaults to discarding.
	// Registerer receives the server's metrics. Defaults to none (unregistered).
	Registerer prometheus.Registerer
	// Gatherer is what GET /metrics exposes. Defaults to Registerer when it is also
	// a Gatherer (a *prometheus.Registry); without one, /metrics is not served.
	Gatherer  prometheus.Gatherer
	AdminKeys *auth.Keys // nil or empty = the API is open
	Version   string     // shown by /health and the OpenAPI document
	// TracerProvider, when set, gets a server span per request (httpapi.Trace,
	// continuing the caller's W3C traceparent). Defaults to none.
	TracerProvider trace.TracerProvider
	// Ready reports whether the server's dependencies answer (GET /health/ready).
	// Defaults to pinging Postgres through Store.
	Ready func(ctx context.Context) error
}

// Handler is the reference CAMS HTTP API: the registry routes behind the admin keys,
// plus the open health, metrics and OpenAPI routes.
type Handler struct {
	store   *Store
	log     *slog.Logger
	mux     *httpapi.Mux
	root    http.Handler
	version string
}

// NewHandler builds the handler.
func NewHandler(cfg HandlerConfig) *Handler {
	h := &Handler{store: cfg.Store, log: cfg.Logger, mux: httpapi.NewMux(), version: cfg.Version}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	ready := cfg.Ready
	if ready == nil {
		ready = cfg.Store.Ping
	}
	m := h.mux
	// The registry (DESIGN §4). The address wildcard takes the rest of the path, so a
	// client that forgot to escape '/' in an address still reaches it.
	for _, route := range []struct {
		pattern string
		handle  http.HandlerFunc
	}{
		{"GET /v1/agent-inboxes/{aiAgentAddress...}", h.get},
		{"PUT /v1/agent-inboxes/{aiAgentAddress...}", h.update},
		{"DELETE /v1/agent-inboxes/{aiAgentAddress...}", h.delete},
		{"POST /v1/agent-inboxes", h.create},
		{"GET /v1/agent-inboxes", h.list},
		{"POST /v1/agent-health-check", h.healthCheck},
	} {
		m.HandleFunc(route.pattern, route.handle)
	}
	httpapi.HealthRoutes(m, cfg.Version, httpapi.Check{Name: "postgres", Check: func(r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		return ready(ctx)
	}})
	gatherer := cfg.Gatherer
	if g, ok := cfg.Registerer.(prometheus.Gatherer); ok && gatherer == nil {
		gatherer = g
	}
	if gatherer != nil {
		m.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	m.HandleFunc("GET /openapi.json", h.openAPI)

	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	h.root = httpapi.Instrument(httpapi.Trace(httpapi.Recover(cfg.AdminKeys.Require(dotSegments(m), auth.OpenPaths), h.log),
		m, cfg.TracerProvider, telemetry.Propagator), m, "cams", reg)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.root.ServeHTTP(w, r) }

// Patterns lists the registered route patterns.
func (h *Handler) Patterns() []string { return h.mux.Patterns() }

// dotSegments lets the addresses "." and ".." through: url.PathEscape leaves them
// as they are, and the ServeMux would clean them out of the path (a redirect) before
// any route matched. Escaping the dots keeps the path as it is and the address intact.
func dotSegments(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), inboxesPrefix); ok && (rest == "." || rest == "..") {
			r2 := r.Clone(r.Context())
			r2.URL.Path = inboxesPrefix + rest
			r2.URL.RawPath = inboxesPrefix + strings.Repeat("%2E", len(rest))
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}

func invalidf(field, format string, args ...any) error {
	return &mapping.ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// readJSON reads a JSON object body of at most MaxBodyBytes into v, answering 413 or
// 400 itself when it cannot. Unknown fields are ignored.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			httpapi.WriteError(w, http.StatusRequestEntityTooLarge, httpapi.CodePayloadTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes))
			return false
		}
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "error reading the body")
		return false
	}
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "the body must be a JSON object")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "malformed JSON: "+err.Error())
		return false
	}
	return true
}

// fail answers err: validation 400, unknown 404, duplicate 409, anything else 500
// (logged here, once).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, address string, err error) {
	var ve *mapping.ValidationError
	switch {
	case errors.As(err, &ve):
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, ve.Error())
	case errors.Is(err, ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, httpapi.CodeNotFound, fmt.Sprintf("no agent is registered under %q", address))
	case errors.Is(err, ErrExists):
		httpapi.WriteError(w, http.StatusConflict, httpapi.CodeConflict, fmt.Sprintf("an agent is already registered under %q", address))
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away: nobody reads the answer, and it is not our error.
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "request cancelled")
	default:
		h.log.ErrorContext(r.Context(), "error serving CAMS request", "route", r.Pattern, "error", err)
		httpapi.WriteError(w, http.StatusInternalServerError, httpapi.CodeInternal, "internal error")
	}
}

// patchOf turns the body of POST or PUT into a Patch (a 400 for a malformed
// inboxAuth).
func patchOf(r *http.Request, req *mapping.Update) (Patch, error) {
	p := Patch{
		InboxDestinationType: req.InboxDestinationType, InboxName: req.InboxName, Status: req.Status,
		Description: req.Description, OwnerTeam: req.OwnerTeam, UpdatedBy: updatedBy(r, req.UpdatedBy),
		SigningSecrets: req.SigningSecrets, InactivePolicy: req.InactivePolicy,
	}
	raw, _ := req.InboxAuth.(json.RawMessage) // what Update's decoding sets
	switch raw = bytes.TrimSpace(raw); {
	case len(raw) == 0:
	case bytes.Equal(raw, []byte("null")):
		p.ClearInboxAuth = true
	default:
		var a mapping.InboxAuth
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			// The decoder's message may quote the input: never echo credentials.
			return Patch{}, invalidf("inboxAuth", "must be an object {type, token} (BEARER), {type, name, value} (HEADER) or {type, username, password} (BASIC)")
		}
		p.InboxAuth = &a
	}
	return p, nil
}

// includeSecrets reports whether the request asks for the secrets unmasked
// (GET /v1/agent-inboxes/{address}?includeSecrets=true, the router's lookup).
func includeSecrets(r *http.Request) bool {
	v, _ := strconv.ParseBool(r.URL.Query().Get("includeSecrets"))
	return v
}

// updatedBy defaults to the name of the caller's admin key, so the registry says who
// changed what even when the client does not.
func updatedBy(r *http.Request, given *string) *string {
	if given != nil {
		return given
	}
	if c := auth.CallerFrom(r.Context()); c.Named {
		return &c.Name
	}
	return nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	address := r.PathValue("aiAgentAddress")
	m, err := h.store.Get(r.Context(), address)
	if err != nil {
		h.fail(w, r, address, err)
		return
	}
	if !includeSecrets(r) {
		m = m.Masked()
	}
	httpapi.WriteJSON(w, http.StatusOK, m)
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	var req mapping.Update
	if !readJSON(w, r, &req) {
		return
	}
	m := mapping.Mapping{Status: mapping.StatusActive, InactivePolicy: mapping.InactivePolicyReject}
	if req.AIAgentAddress != nil {
		m.AIAgentAddress = *req.AIAgentAddress
	}
	p, err := patchOf(r, &req)
	if err != nil {
		h.fail(w, r, m.AIAgentAddress, err)
		return
	}
	p.apply(&m)
	if err := m.Validate(); err != nil {
		h.fail(w, r, m.AIAgentAddress, err)
		return
	}
	out, err := h.store.Create(r.Context(), m)
	if err != nil {
		h.fail(w, r, m.AIAgentAddress, err)
		return
	}
	h.log.InfoContext(r.Context(), "agent registered", "ai_agent_address", out.AIAgentAddress,
		"inbox_destination_type", out.InboxDestinationType, "status", out.Status, "updated_by", out.UpdatedBy)
	w.Header().Set("Location", inboxesPrefix+mapping.EscapeAddress(out.AIAgentAddress))
	httpapi.WriteJSON(w, http.StatusCreated, out.Masked())
}

func (h *Handler) update(w http.ResponseWriter, r *http.Request) {
	address := r.PathValue("aiAgentAddress")
	var req mapping.Update
	if !readJSON(w, r, &req) {
		return
	}
	if req.AIAgentAddress != nil && *req.AIAgentAddress != address {
		h.fail(w, r, address, invalidf("aiAgentAddress", "cannot be changed (register the new address and delete the old one)"))
		return
	}
	p, err := patchOf(r, &req)
	if err != nil {
		h.fail(w, r, address, err)
		return
	}
	out, err := h.store.Update(r.Context(), address, p)
	if err != nil {
		h.fail(w, r, address, err)
		return
	}
	h.log.InfoContext(r.Context(), "agent updated", "ai_agent_address", out.AIAgentAddress,
		"inbox_destination_type", out.InboxDestinationType, "status", out.Status, "updated_by", out.UpdatedBy)
	httpapi.WriteJSON(w, http.StatusOK, out.Masked())
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	address := r.PathValue("aiAgentAddress")
	if err := h.store.Delete(r.Context(), address); err != nil {
		h.fail(w, r, address, err)
		return
	}
	h.log.InfoContext(r.Context(), "agent deleted", "ai_agent_address", address)
	w.WriteHeader(http.StatusNoContent)
}

// ListPage is the body of GET /v1/agent-inboxes. NextCursor is absent on the last
// page.
type ListPage struct {
	Items      []mapping.Mapping `json:"items"`
	NextCursor string            `json:"nextCursor,omitempty"`
}

// Cursors are opaque to clients: the last address of the page, base64url-encoded so
// it travels in a query string untouched.
func encodeCursor(address string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(address))
}

func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) == 0 {
		return "", invalidf("cursor", "is not a cursor this server returned")
	}
	return string(b), nil
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := DefaultListLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			h.fail(w, r, "", invalidf("limit", "%q is not a positive integer", s))
			return
		}
		limit = min(n, MaxListLimit) // larger asks get the largest page, not an error
	}
	after := ""
	if c := q.Get("cursor"); c != "" {
		var err error
		if after, err = decodeCursor(c); err != nil {
			h.fail(w, r, "", err)
			return
		}
	}
	items, more, err := h.store.List(r.Context(), after, limit)
	if err != nil {
		h.fail(w, r, "", err)
		return
	}
	page := ListPage{Items: make([]mapping.Mapping, len(items))}
	for i, m := range items {
		page.Items[i] = m.Masked()
	}
	if more {
		page.NextCursor = encodeCursor(items[len(items)-1].AIAgentAddress)
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
}

// healthRequest is the body of POST /v1/agent-health-check. details may be any JSON
// value: a string is stored as is, anything else as its JSON text.
type healthRequest struct {
	AIAgentAddress string          `json:"aiAgentAddress"`
	Status         string          `json:"status"`
	Details        json.RawMessage `json:"details"`
	Timestamp      *string         `json:"timestamp"`
}

func (h *Handler) healthCheck(w http.ResponseWriter, r *http.Request) {
	var req healthRequest
	if !readJSON(w, r, &req) {
		return
	}
	rep := HealthReport{Address: req.AIAgentAddress, Status: req.Status}
	if err := h.parseHealth(&req, &rep); err != nil {
		h.fail(w, r, rep.Address, err)
		return
	}
	out, previous, err := h.store.ReportHealth(r.Context(), rep)
	if err != nil {
		h.fail(w, r, rep.Address, err)
		return
	}
	if previous != out.Status {
		h.log.InfoContext(r.Context(), "agent status changed by health check", "ai_agent_address", out.AIAgentAddress,
			"health_status", rep.Status, "from", previous, "to", out.Status)
	}
	httpapi.WriteJSON(w, http.StatusOK, out.Masked())
}

func (h *Handler) parseHealth(req *healthRequest, rep *HealthReport) error {
	if req.AIAgentAddress == "" {
		return invalidf("aiAgentAddress", "is required")
	}
	switch req.Status {
	case mapping.HealthHealthy, mapping.HealthUnhealthy:
	default:
		return invalidf("status", "%q is not HEALTHY or UNHEALTHY", req.Status)
	}
	if d := bytes.TrimSpace(req.Details); len(d) > 0 && !bytes.Equal(d, []byte("null")) {
		if err := json.Unmarshal(d, &rep.Details); err != nil {
			var buf bytes.Buffer
			if err := json.Compact(&buf, d); err != nil {
				return invalidf("details", "is not valid JSON")
			}
			rep.Details = buf.String()
		}
		if err := mapping.ValidateText("details", rep.Details, mapping.MaxDetailsBytes); err != nil {
			return err
		}
	}
	if req.Timestamp != nil && *req.Timestamp != "" {
		t, err := time.Parse(time.RFC3339Nano, *req.Timestamp)
		if err != nil {
			return invalidf("timestamp", "%q is not an RFC 3339 time", *req.Timestamp)
		}
		// A clock running ahead must not make every later honest report look stale.
		if now := time.Now(); t.After(now) {
			t = now
		}
		t = t.UTC().Truncate(time.Millisecond)
		rep.At = &t
	}
	return nil
}
