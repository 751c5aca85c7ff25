package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/msgrouter/msgrouter/internal/audit"
	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/backoff"
	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/cams"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/console"
	"github.com/msgrouter/msgrouter/internal/consumer"
	"github.com/msgrouter/msgrouter/internal/delivery"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/message"
	"github.com/msgrouter/msgrouter/internal/migrate"
	"github.com/msgrouter/msgrouter/internal/outbox"
	"github.com/msgrouter/msgrouter/internal/service"
	"github.com/msgrouter/msgrouter/internal/stream"
)

// ConsumerConfig is the router's durable consumer. AckWait 10s: a crashed router's
// messages come back to the others within it, and a slow batch is kept alive with
// InProgress every AckWait/3 rather than redelivered. MaxDeliver unlimited: transient failures (CAMS or
// Postgres down) Nak with a growing delay, so an outage of any length never
// exhausts deliveries, while poison messages are recorded and terminated rather
// than redelivered. MaxAckPending bounds in-flight messages across all replicas.
func ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       stream.ConsumerName,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       10 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 10000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// Options are the parts Run takes from its caller.
type Options struct {
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registry receives the metrics and is what /metrics shows. Defaults to
	// service.NewRegistry().
	Registry *prometheus.Registry
	// TracerProvider defaults to none (no spans).
	TracerProvider trace.TracerProvider
	// Ready receives the admin address once the router serves (tests and the
	// all-in-one binary wait on it).
	Ready chan<- string
	// AckWait overrides the consumer's AckWait (tests). Zero keeps 10s.
	AckWait time.Duration
	// WrapHandler wraps the takeover handler (fault injection in tests).
	WrapHandler func(consumer.Handler) consumer.Handler
	// LaneWait overrides the dispatcher's outbox.Config.LaneWait (tests). Zero
	// keeps its default (1s).
	LaneWait time.Duration
	// Lease overrides the dispatcher's outbox.Config.Lease (tests). Zero keeps its
	// default (3×DELIVERY_TIMEOUT, at least 10s).
	Lease time.Duration
}

// withDefaults fills the zero values (STYLE.md, convention 1).
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = service.NewRegistry()
	}
	return o
}

// validate returns one error naming the first option that cannot work.
func (o Options) validate() error {
	if o.AckWait < 0 {
		return fmt.Errorf("router: AckWait must not be negative (got %s)", o.AckWait)
	}
	if o.LaneWait < 0 {
		return fmt.Errorf("router: LaneWait must not be negative (got %s)", o.LaneWait)
	}
	if o.Lease < 0 {
		return fmt.Errorf("router: Lease must not be negative (got %s)", o.Lease)
	}
	return nil
}

// NATSBreakerOpenTimeout caps the open period of a NATS subject's breaker: a JetStream
// leader election takes a few seconds (~7 s measured in issue 9), and deliveries must
// resume within seconds of it, not after a full BREAKER_OPEN_TIMEOUT (DESIGN §5).
const NATSBreakerOpenTimeout = 2 * time.Second

// Run runs a router replica until ctx is cancelled or its admin server fails,
// then shuts down gracefully within cfg.ShutdownTimeout: stop pulling, finish or
// hand back batches and deliveries, write their results, close (service.Run:
// reverse start order, on every exit path). It returns nil after ctx ended, the
// error that kept it from starting, or the admin server's failure.
func Run(ctx context.Context, cfg config.Router, o Options) error {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return err
	}
	log := o.Logger
	reg := o.Registry
	adminKeys, err := auth.Parse(cfg.AdminAPIKeys)
	if err != nil {
		return fmt.Errorf("ADMIN_API_KEYS: %w", err)
	}

	pool, err := service.OpenPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if n, err := migrate.Apply(ctx, pool, migrate.Router); err != nil {
		return err
	} else if n > 0 {
		log.Info("applied migrations", slog.Int("count", n))
	}

	nc, js, st, err := service.NATS(ctx, cfg.NATS, "msgrouter-router", ensureTimeout, log)
	if err != nil {
		return err
	}
	defer nc.Close()

	breakerMetrics := breaker.NewMetrics(reg)
	camsClient, err := cams.NewClient(cams.ClientConfig{
		BaseURL: cfg.CAMSURL, APIKey: cfg.CAMSAPIKey, Timeout: cfg.CAMSTimeout, CacheTTL: cfg.CAMSCacheTTL,
		BreakerFailures: uint32(cfg.BreakerFailures), BreakerOpenTimeout: cfg.BreakerOpenTimeout,
		Registerer: reg, Logger: log, BreakerMetrics: breakerMetrics,
	})
	if err != nil {
		return fmt.Errorf("CAMS_API_URL: %w", err)
	}
	defer camsClient.Close()
	httpDeliverer, err := delivery.NewHTTP(delivery.HTTPConfig{
		Timeout: cfg.DeliveryTimeout, AllowPrivateNetworks: cfg.AllowPrivateNetworks,
		SigningSecrets: cfg.SigningSecrets, MaxIdleConnsPerHost: cfg.DestinationConcurrency,
		SystemAddrs: []string{cfg.Addr, delivery.OriginAddr(cfg.CAMSURL), cfg.PprofAddr},
	})
	if err != nil {
		return fmt.Errorf("DELIVERY_SIGNING_SECRETS: %w", err)
	}
	defer httpDeliverer.Close()
	// Keep-alive at work shows as dials far below deliveries (issue 11).
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "msgrouter_delivery_http_dials_total",
		Help: "Connections dialled to HTTP inboxes (past the address guard); with keep-alive, far fewer than deliveries.",
	}, func() float64 { return float64(httpDeliverer.Dials()) }))
	store := outbox.NewStore(pool)
	var takeover *Takeover
	var cons *consumer.Consumer // set below, before the dispatcher starts
	dispatcher := outbox.New(outbox.Config{
		// Keyed messages wait for the consumer's ack floor (DESIGN §5a, outbox/ordergate.go).
		AckFloor: func(ctx context.Context) (uint64, error) {
			info, err := cons.Info(ctx)
			if err != nil {
				return 0, err
			}
			return info.AckFloor.Stream, nil
		},
		// What the gate reads of a stream message holding the floor (outbox/ordergate.go).
		StreamKey: outbox.StreamKeyOf(st, func(data []byte) (string, string, error) {
			env, err := message.Parse(data)
			if err != nil {
				return "", "", err
			}
			return env.AIAgentAddress, env.OrderingKey(), nil
		}),
		Store: store,
		Deliverer: delivery.ByType{
			mapping.TypeNATSSubject:  delivery.NewNATS(js),
			mapping.TypeHTTPEndpoint: httpDeliverer,
		},
		Breakers: breaker.NewSet(breaker.Settings{
			Failures: uint32(cfg.BreakerFailures), OpenTimeout: cfg.BreakerOpenTimeout, Metrics: breakerMetrics,
			// A NATS inbox fails as a whole while its stream elects a leader (a few
			// seconds): re-probe it after at most NATSBreakerOpenTimeout (DESIGN §5).
			NATSOpenTimeout: min(cfg.BreakerOpenTimeout, NATSBreakerOpenTimeout),
		}),
		LookupFresh: camsClient.LookupFresh,
		Lookup:      camsClient.Lookup, // retries follow CAMS (DESIGN §5)
		HoldMaxAge:  cfg.HoldMaxAge,    // DESIGN §5a
		Secrets: func(ctx context.Context, address string) ([]string, error) {
			m, err := camsClient.Lookup(ctx, address)
			if errors.Is(err, cams.ErrNotFound) {
				return nil, nil // unregistered since: the global secrets apply
			}
			if err != nil {
				return nil, err
			}
			return m.SigningSecrets, nil
		},
		InboxAuth:      camsClient.InboxAuth,
		Backoff:        backoff.Policy{Initial: cfg.DeliveryBackoffInitial, Max: cfg.DeliveryBackoffMax},
		MaxAttempts:    cfg.DeliveryMaxAttempts,
		Timeout:        cfg.DeliveryTimeout,
		Concurrency:    cfg.DestinationConcurrency,
		Rate:           cfg.DestinationRate,
		LaneWait:       o.LaneWait,
		Lease:          o.Lease,
		BreakerWait:    min(time.Second, cfg.BreakerOpenTimeout),
		OnRejected:     func(reason string) { takeover.OnRejected(reason) },
		Logger:         log,
		Registerer:     reg,
		TracerProvider: o.TracerProvider,
	})
	takeover = NewTakeover(store, camsClient, dispatcher, cfg.BreakerOpenTimeout, log, reg, o.TracerProvider)
	consCfg := ConsumerConfig()
	if o.AckWait > 0 {
		consCfg.AckWait = o.AckWait
	}
	handler := consumer.Handler(takeover.Handle)
	if o.WrapHandler != nil {
		handler = o.WrapHandler(handler)
	}
	cons, err = consumer.New(ctx, consumer.Config{
		Stream:   st,
		Consumer: consCfg,
		Handler:  handler,
		Paused:   func() bool { return !camsClient.Available() },
		Recreate: func(ctx context.Context) (jetstream.Stream, error) {
			return stream.EnsureWith(ctx, js, stream.SettingsFrom(cfg.NATS.Stream), log)
		},
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	janitor := outbox.NewJanitor(store, cfg.MessageRetention, log, reg)
	// The scheduled audit (internal/audit, AUDIT_*): stops with ctx, before the pool closes.
	auditor := audit.NewScheduler(audit.SchedulerConfig{Interval: cfg.Audit.Interval, JS: js, DB: pool, Logger: log, Registerer: reg,
		Audit: audit.Config{Since: min(cfg.Audit.Window, cfg.MessageRetention), Grace: cfg.Audit.Grace, PendingThreshold: cfg.Audit.PendingThreshold}})

	readiness := stream.NewReadiness(nc, js, time.Second)
	streamHealth := stream.NewHealth(reg)
	mux := httpapi.NewMux()
	(&admin{store: store, dispatcher: dispatcher}).routes(mux)
	httpapi.HealthRoutes(mux, config.Version,
		// Ready means the stream can store a message (issue 9), cached briefly.
		httpapi.Check{Name: "nats", Check: func(r *http.Request) error { return readiness.Check(r.Context()) }},
		httpapi.Check{Name: "postgres", Check: func(r *http.Request) error {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			return pool.Ping(ctx)
		}},
	)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	// The operator console (DESIGN §12) and its admin routes; its static assets stay open.
	if err := console.Mount(mux, console.Options{Pool: pool, Gatherer: reg, CAMSURL: cfg.CAMSURL,
		CAMSAPIKey: cfg.CAMSAPIKey, CAMSTimeout: cfg.CAMSTimeout, Logger: log}); err != nil {
		return err
	}
	open := func(r *http.Request) bool { return auth.OpenPaths(r) || console.OpenPaths(r) }
	srv := httpapi.NewServer(cfg.Addr, httpapi.Instrument(httpapi.Recover(adminKeys.Require(mux, open), log), mux, "router", reg), log)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("ROUTER_ADDR: cannot listen on %s: %w", cfg.Addr, err)
	}

	// Started in this order and stopped in reverse on every exit path (a part that
	// fails to start, the admin server failing, ctx ending), within
	// SHUTDOWN_TIMEOUT (DESIGN §8.4), before the deferred NATS and pool closes run
	// beneath them: stop pulling (unfinished batches are redelivered), finish or
	// hand back deliveries and write their results, close the admin server, stop
	// maintenance, drain NATS. A part that does not stop in time is logged and left
	// behind: what it held comes back (stream messages after AckWait, outbox rows
	// after their lease), so the router still exits 0.
	return service.Run(ctx, log, cfg.ShutdownTimeout, func() {
		log.Info("router ready", slog.String("addr", ln.Addr().String()))
		if o.Ready != nil {
			o.Ready <- ln.Addr().String()
		}
	},
		service.Part{Name: "NATS connection", Service: service.Drain(nc)},
		service.Part{Name: "janitor", Service: janitor},
		service.Part{Name: "scheduled audit", Service: auditor},
		// ROUTER_MESSAGES' replica health, for the alerts (issue 9).
		service.Part{Name: "stream health", Service: service.Go("stream health", func(ctx context.Context) {
			streamHealth.Run(ctx, js, stream.HealthInterval, log)
		})},
		service.Part{Name: "admin server", Service: &service.HTTPServer{Server: srv, Listener: ln}},
		service.Part{Name: "dispatcher", Service: dispatcher},
		service.Part{Name: "consumer", Service: cons},
	)
}

// ensureTimeout bounds creating or updating the stream at start.
const ensureTimeout = 10 * time.Second

// OpenPool connects to Postgres as the router: service.OpenPool.
func OpenPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	return service.OpenPool(ctx, url)
}
