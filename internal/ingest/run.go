package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/service"
)

// RunOption adjusts Run.
type RunOption func(*runOptions)

type runOptions struct {
	tp    trace.TracerProvider
	ready func(addr net.Addr)
}

// WithTracerProvider makes Run use tp instead of calling telemetry.Setup (a process
// running several services sets telemetry up once).
func WithTracerProvider(tp trace.TracerProvider) RunOption {
	return func(o *runOptions) { o.tp = tp }
}

// OnReady is called once the stream exists and the server listens, with the address
// it listens on (useful with INGEST_ADDR=127.0.0.1:0).
func OnReady(f func(addr net.Addr)) RunOption { return func(o *runOptions) { o.ready = f } }

// ensureTimeout bounds creating or updating the stream at start.
const ensureTimeout = 10 * time.Second

// Run runs the ingest service until ctx is cancelled, then shuts down gracefully:
// new submissions get 503 (Drain), in-flight requests finish within
// cfg.ShutdownTimeout, the NATS connection is drained. It returns nil after a
// graceful shutdown and an error when it could not start (NATS unreachable, stream
// not created, address taken) or the server failed.
func Run(ctx context.Context, cfg config.Ingest, log *slog.Logger, reg *prometheus.Registry, opts ...RunOption) (err error) {
	var o runOptions
	for _, opt := range opts {
		opt(&o)
	}
	keys, err := auth.Parse(cfg.APIKeys)
	if err != nil {
		return fmt.Errorf("INGEST_API_KEYS: %w", err)
	}

	// The parts, started in this order and stopped in reverse on every exit path
	// (g.Run; the defer covers the paths that return before it).
	g := service.NewGroup(log)
	defer g.StopWithin(ctx, cfg.ShutdownTimeout)
	var parts []service.Part
	tp := o.tp
	if tp == nil {
		if tp, err = g.StartTelemetry(ctx, cfg.ShutdownTimeout, "msgrouter-ingest"); err != nil {
			return err
		}
	}

	nc, js, _, err := service.NATS(ctx, cfg.NATS, "msgrouter-ingest", ensureTimeout, log,
		// No reconnect buffer: a publish while disconnected fails at once (503)
		// instead of waiting in a buffer and being stored after we answered 503.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("reconnected to NATS", "nats_server", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return err
	}
	defer nc.Close()
	// Every request has its answer before the drain (reverse order): the drain
	// flushes what the connection still holds.
	parts = append(parts, service.Part{Name: "NATS connection", Service: service.Drain(nc)})

	h, err := NewHandler(Config{
		MaxMessageBytes: cfg.MaxMessageBytes,
		MaxBatchBytes:   cfg.MaxBatchBytes,
		Keys:            keys,
		RateLimit:       cfg.RateLimit,
		RateBurst:       cfg.RateBurst,
		JS:              js,
		NC:              nc,
		PublishTimeout:  cfg.PublishTimeout,
		Logger:          log,
		Registerer:      reg,
		Gatherer:        reg,
		Version:         config.Version,
		TracerProvider:  tp,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("INGEST_ADDR: error listening on %s: %w", cfg.Addr, err)
	}
	pp, err := service.Pprof(cfg.PprofAddr, log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	parts = append(parts,
		service.Part{Name: "pprof", Service: pp},
		// Stop turns new submissions away with 503 (Drain) and lets in-flight
		// requests finish within SHUTDOWN_TIMEOUT.
		service.Part{Name: "HTTP server", Service: &service.HTTPServer{
			Server: httpapi.NewServer(cfg.Addr, h, log), Listener: ln, Before: h.Drain}},
	)
	return g.Run(ctx, cfg.ShutdownTimeout, func() {
		log.Info("ingest listening", "ingest_addr", ln.Addr().String(), "api_keys", keys.Len())
		if o.ready != nil {
			o.ready(ln.Addr())
		}
	}, parts...)
}
