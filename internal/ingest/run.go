package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/pprof"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/telemetry"
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

	tp := o.tp
	if tp == nil {
		var shutdown func(context.Context) error
		tp, shutdown, err = telemetry.Setup(ctx, "msgrouter-ingest", config.Version)
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := shutdown(sctx); err != nil {
				log.Warn("error flushing traces", "error", err)
			}
		}()
	}

	closed := make(chan struct{})
	nc, err := stream.Connect(cfg.NATS, "msgrouter-ingest",
		// No reconnect buffer: a publish while disconnected fails at once (503)
		// instead of waiting in a buffer and being stored after we answered 503.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("reconnected to NATS", "nats_server", c.ConnectedUrlRedacted()) }),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
	)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("error creating the JetStream context: %w", err)
	}
	ectx, cancel := context.WithTimeout(ctx, ensureTimeout)
	_, err = stream.EnsureWith(ectx, js, stream.SettingsFrom(cfg.NATS.Stream), log)
	cancel()
	if err != nil {
		return err
	}

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
	stopPprof, err := pprof.Start(cfg.PprofAddr, log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer stopPprof()

	srv := httpapi.NewServer(cfg.Addr, h, log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("ingest listening", "ingest_addr", ln.Addr().String(), "api_keys", keys.Len())
	if o.ready != nil {
		o.ready(ln.Addr())
	}

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "shutdown_timeout", cfg.ShutdownTimeout)
	case serveErr = <-served:
		log.Error("HTTP server stopped", "error", serveErr)
	}

	h.Drain()
	sctx, cancelShutdown := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancelShutdown()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("in-flight requests did not finish within SHUTDOWN_TIMEOUT; closing them", "error", err)
		_ = srv.Close()
	}
	if serveErr == nil {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			serveErr = err
		}
	}
	// Every request has its answer; drain flushes what the connection still holds.
	if err := nc.Drain(); err == nil {
		select {
		case <-closed:
		case <-sctx.Done():
			log.Warn("NATS drain did not finish within SHUTDOWN_TIMEOUT")
		}
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("error serving HTTP: %w", serveErr)
	}
	log.Info("stopped")
	return nil
}
