// Package ingest is the HTTP front of msgrouter (DESIGN §2): it validates a submitted
// message, assigns its messageId, publishes the envelope to the ROUTER_MESSAGES
// stream and answers 202 only once JetStream has confirmed storage.
//
// What it guarantees: a 202 means the envelope is in the stream (PubAck received),
// under Nats-Msg-Id = messageId so a retried submission with the same
// senderProvidedMessageId is stored once within the duplicate window; any failure to
// get that confirmation is a 503 with Retry-After. It keeps no state besides the
// per-sender rate limiters, so any number of replicas can run side by side.
package ingest

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/ratelimit"
	"github.com/msgrouter/msgrouter/internal/stream"
)

// Defaults of Config.
const (
	DefaultMaxMessageBytes = 262144
	// DefaultMaxBatchBytes bounds a batch request's body (MAX_BATCH_BYTES, DESIGN §7).
	DefaultMaxBatchBytes  = 4194304
	DefaultPublishTimeout = 5 * time.Second
	// DefaultMaxSenders bounds the rate limiters kept (one per key or client IP).
	DefaultMaxSenders = 10_000
	// retryAfterUnavailable is what a 503 asks clients to wait: JetStream blips
	// (leader elections, reconnects) are over in about a second.
	retryAfterUnavailable = time.Second
)

// Config holds the handler's dependencies and settings.
type Config struct {
	// MaxMessageBytes bounds the request body. Defaults to 262144.
	MaxMessageBytes int
	// MaxBatchBytes bounds the body of POST /v1/messages/batch (DESIGN §2).
	// Defaults to 4194304.
	MaxBatchBytes int
	// Keys are the accepted bearer keys; nil or empty leaves the API open.
	Keys *auth.Keys
	// RateLimit is messages per second per sender (per key; per client IP when no
	// keys are configured). Defaults to 0 = unlimited.
	RateLimit float64
	// RateBurst is the bucket size. Defaults to max(1, 2×RateLimit).
	RateBurst int
	// Limiter replaces the limiter built from RateLimit and RateBurst (tests pass
	// one with a fake clock).
	Limiter *ratelimit.Keyed
	// JS answers the readiness check's stream look-ups; required. Messages are
	// published on NC through a JetStream context of the handler's own (async).
	JS jetstream.JetStream
	// NC is the connection behind JS, checked by readiness; required.
	NC *nats.Conn
	// PublishTimeout bounds the wait for the PubAck. Defaults to 5s.
	PublishTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; Gatherer is served on /metrics. Both default
	// to a fresh registry.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Version is reported by /health. Defaults to "dev".
	Version string
	// TracerProvider makes the ingest spans. Defaults to a no-op provider: a
	// caller's trace context is then passed on as is, and none is started.
	TracerProvider trace.TracerProvider
}

func (c Config) withDefaults() Config {
	c.MaxMessageBytes = cmp.Or(c.MaxMessageBytes, DefaultMaxMessageBytes)
	c.MaxBatchBytes = cmp.Or(c.MaxBatchBytes, DefaultMaxBatchBytes)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, DefaultPublishTimeout)
	c.RateBurst = cmp.Or(c.RateBurst, max(1, int(2*c.RateLimit)))
	c.Version = cmp.Or(c.Version, "dev")
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil || c.Gatherer == nil {
		reg := prometheus.NewRegistry()
		c.Registerer, c.Gatherer = reg, reg
	}
	if c.TracerProvider == nil {
		c.TracerProvider = noop.NewTracerProvider()
	}
	if c.Limiter == nil {
		c.Limiter = ratelimit.New(c.RateLimit, c.RateBurst, DefaultMaxSenders)
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.JS == nil:
		return errors.New("ingest: Config.JS is required")
	case c.NC == nil:
		return errors.New("ingest: Config.NC is required")
	case c.MaxMessageBytes < 0:
		return errors.New("ingest: Config.MaxMessageBytes is negative")
	case c.MaxBatchBytes < 0:
		return errors.New("ingest: Config.MaxBatchBytes is negative")
	}
	return nil
}

// Handler is the ingest HTTP API: POST /v1/messages, POST /v1/messages/batch, health, metrics and the OpenAPI
// document, behind bearer-key auth for the message route.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	tracer   trace.Tracer
	metrics  *metrics
	mux      *httpapi.Mux
	routes   *http.ServeMux // same patterns as mux; only used to name the route of a request for metrics
	root     http.Handler   // auth around mux
	draining atomic.Bool
	// async publishes every submission, single or batch item: asynchronous
	// publishes on the same connection, each PubAck awaited at most PublishTimeout
	// (so a lost ack never leaves a pending entry behind).
	async   jetstream.JetStream
	pubFail *failureLog // failed publishes, aggregated (issue 9)
}

// NewHandler builds the handler.
func NewHandler(cfg Config) (*Handler, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	async, err := jetstream.New(cfg.NC, jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(asyncMaxPending))
	if err != nil {
		return nil, fmt.Errorf("ingest: error creating the JetStream context for publishes: %w", err)
	}
	h := &Handler{
		async:   async,
		cfg:     cfg,
		log:     cfg.Logger,
		tracer:  cfg.TracerProvider.Tracer("github.com/msgrouter/msgrouter/internal/ingest"),
		metrics: m,
		mux:     httpapi.NewMux(),
		routes:  http.NewServeMux(),
		pubFail: newFailureLog(cfg.Logger, PublishFailureLogInterval),
	}
	h.handle(RouteMessages, http.HandlerFunc(h.postMessage))
	h.handle(RouteBatch, http.HandlerFunc(h.postBatch))
	readiness := stream.NewReadiness(cfg.NC, cfg.JS, time.Second)
	httpapi.HealthRoutes(h.mux, cfg.Version,
		httpapi.Check{Name: "ingest", Check: func(*http.Request) error {
			if h.draining.Load() {
				return errDraining
			}
			return nil
		}},
		// Ready means "a message can be stored now" (issue 9), cached briefly.
		httpapi.Check{Name: "jetstream", Check: func(r *http.Request) error {
			return readiness.Check(r.Context())
		}},
	)
	h.handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	h.handle("GET /openapi.json", http.HandlerFunc(serveOpenAPI))
	h.handle("GET /docs", http.HandlerFunc(serveDocs))
	for _, p := range h.mux.Patterns() {
		h.routes.Handle(p, http.NotFoundHandler())
	}
	// A handler panic is a 500 with the contract's body, logged once and counted
	// (ServeHTTP observes it), never a dropped connection (issue 10).
	h.root = httpapi.Recover(cfg.Keys.Require(h.mux, auth.OpenPaths), h.log)
	return h, nil
}

// RouteMessages is the pattern of the message route.
const RouteMessages = "POST /v1/messages"

var errDraining = errors.New("draining: the server is shutting down")

func (h *Handler) handle(pattern string, hd http.Handler) { h.mux.Handle(pattern, hd) }

// Patterns lists the routes served (the OpenAPI test checks each is documented).
func (h *Handler) Patterns() []string { return h.mux.Patterns() }

// Drain makes new submissions fail with 503 and readiness report not ready, so load
// balancers move traffic away while the server shuts down. In-flight requests
// finish normally.
func (h *Handler) Drain() { h.draining.Store(true); h.pubFail.flush() }

// ServeHTTP serves the API and counts every request by route, status and outcome.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	_, route := h.routes.Handler(r)
	if route == "" {
		route = "unmatched"
	}
	sw := &httpapi.StatusWriter{ResponseWriter: w}
	h.root.ServeHTTP(sw, r)
	h.metrics.observe(route, sw.Status(), time.Since(start))
}

// senderKey names the rate-limit bucket of a request: the key's name, a digest of a
// bare key (never the key itself: the map is memory, but keep secrets out of it), or
// the client IP when no keys are configured. X-Forwarded-For is not trusted: any
// client could set it to escape its limit.
func (h *Handler) senderKey(r *http.Request) string {
	if h.cfg.Keys.Enabled() {
		if c := auth.CallerFrom(r.Context()); c.Named {
			return "name:" + c.Name
		}
		token, _ := auth.Bearer(r)
		d := sha256.Sum256([]byte(token))
		return "key:" + hex.EncodeToString(d[:8])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "ip:" + host
}

func itoa(n int) string { return strconv.Itoa(n) }
