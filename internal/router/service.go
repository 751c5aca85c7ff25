package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
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
	"github.com/msgrouter/msgrouter/internal/pguuid"
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
	Logger         *slog.Logger
	Registry       *prometheus.Registry
	TracerProvider trace.TracerProvider
	// Ready receives the admin address once the router serves (tests and the
	// all-in-one binary wait on it).
	Ready chan<- string
	// AckWait overrides the consumer's AckWait (tests). Zero keeps 10s.
	AckWait time.Duration
	// WrapHandler wraps the takeover handler (fault injection in tests).
	WrapHandler func(consumer.Handler) consumer.Handler
}

// NATSBreakerOpenTimeout caps the open period of a NATS subject's breaker: a JetStream
// leader election takes a few seconds (~7 s measured in issue 9), and deliveries must
// resume within seconds of it, not after a full BREAKER_OPEN_TIMEOUT (DESIGN §5).
const NATSBreakerOpenTimeout = 2 * time.Second

// Run runs a router replica until ctx is cancelled, then shuts down gracefully
// within cfg.ShutdownTimeout: stop pulling, finish or hand back batches and
// deliveries, write their results, close.
func Run(ctx context.Context, cfg config.Router, o Options) error {
	log := o.Logger
	reg := o.Registry
	adminKeys, err := auth.Parse(cfg.AdminAPIKeys)
	if err != nil {
		return fmt.Errorf("ADMIN_API_KEYS: %w", err)
	}

	pool, err := OpenPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if n, err := migrate.Apply(ctx, pool, migrate.Router); err != nil {
		return err
	} else if n > 0 {
		log.Info("applied migrations", slog.Int("count", n))
	}

	nc, err := stream.Connect(cfg.NATS, "msgrouter-router")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("error opening JetStream: %w", err)
	}
	st, err := stream.EnsureWith(ctx, js, stream.SettingsFrom(cfg.NATS.Stream), log)
	if err != nil {
		return err
	}

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
		StreamKey: func(ctx context.Context, seq uint64) (string, string, error) {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return "", "", nil
			}
			if err != nil {
				return "", "", err
			}
			env, perr := message.Parse(m.Data)
			if perr != nil {
				return "", "", nil // never delivered: nothing to wait for
			}
			return env.AIAgentAddress, env.OrderingKey(), nil
		},
		Store: store,
		Deliverer: delivery.Router{
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
	auditor.Start(ctx)
	defer auditor.Stop()

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

	// From here on every exit path stops what was started, in reverse order,
	// within SHUTDOWN_TIMEOUT (DESIGN §8.4), before the deferred NATS and pool
	// closes run beneath them.
	if err := dispatcher.Start(ctx); err != nil {
		return err
	}
	if err := cons.Start(ctx); err != nil {
		shutdown(log, cfg.ShutdownTimeout, nil, dispatcher, nil, nil, nil)
		return err
	}
	janitor.Start(ctx)
	// ROUTER_MESSAGES' replica health, for the alerts (issue 9).
	hctx, stopHealth := context.WithCancel(ctx)
	healthDone := make(chan struct{})
	go func() {
		defer close(healthDone)
		streamHealth.Run(hctx, js, stream.HealthInterval, log)
	}()
	defer func() { stopHealth(); <-healthDone }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("router ready", slog.String("addr", ln.Addr().String()))
	if o.Ready != nil {
		o.Ready <- ln.Addr().String()
	}

	var failed error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		failed = fmt.Errorf("admin server failed: %w", err)
		log.Error("admin server failed, stopping", slog.Any("error", err))
	}
	shutdown(log, cfg.ShutdownTimeout, cons, dispatcher, janitor, srv, nc)
	return failed
}

// shutdown stops the router's parts in reverse start order within timeout: stop
// pulling (unfinished batches are redelivered), finish or hand back deliveries and
// write their results, stop maintenance, close the admin server, drain NATS. A part
// that does not finish in time is logged and left behind: what it held comes back
// (stream messages after AckWait, outbox rows after their lease), so a timed-out
// shutdown is still a clean one and the router exits 0 (DESIGN §8.4). nil parts
// were not started.
func shutdown(log *slog.Logger, timeout time.Duration, cons *consumer.Consumer, dispatcher *outbox.Dispatcher,
	janitor *outbox.Janitor, srv *http.Server, nc *nats.Conn) {
	log.Info("router stopping", slog.Duration("shutdown_timeout", timeout))
	start := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	warn := func(what string, err error) {
		if err != nil {
			log.Warn("shutdown: "+what+" did not finish cleanly (its work comes back to another replica or a restart)",
				slog.Any("error", err))
		}
	}
	if cons != nil {
		warn("consumer", cons.Stop(sctx))
	}
	if dispatcher != nil {
		warn("dispatcher", dispatcher.Stop(sctx))
	}
	if janitor != nil {
		warn("janitor", janitor.Stop(sctx))
	}
	if srv != nil {
		if err := srv.Shutdown(sctx); err != nil {
			warn("admin server", err)
			_ = srv.Close()
		}
	}
	if nc != nil {
		warn("NATS drain", nc.Drain())
	}
	log.Info("router stopped", slog.Duration("took", time.Since(start)))
}

// OpenPool connects to Postgres. DATABASE_URL may list several hosts with
// target_session_attrs=read-write (pgx tries them in order and keeps the one that
// accepts writes, so a failover of an HA Postgres needs no configuration change), and
// may set default_query_exec_mode. Every connection gets an
// idle_in_transaction_session_timeout, so a transaction left open by a bug or a
// stalled replica cannot hold locks (or block vacuum) for long.
func OpenPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if pc.MaxConns < 8 {
		pc.MaxConns = 8
	}
	pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "60000"
	pc.ConnConfig.RuntimeParams["application_name"] = "msgrouter-router"
	// uuid.UUID as 16 raw bytes instead of pgx's driver.Valuer fallback (package
	// pguuid; 20–29 % of the router's CPU in a drain, BENCHMARKS.md "Levers").
	pc.AfterConnect = pguuid.AfterConnect
	// The query mode is pgx's default (cached prepared statements) unless DATABASE_URL
	// sets default_query_exec_mode: behind PgBouncer in transaction pooling, `exec`
	// (README, "Running in production"). Overriding it here would make that impossible.
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		// One line: pgx lists every address it tried on lines of their own.
		return nil, fmt.Errorf("cannot reach Postgres at %s (set DATABASE_URL, or start Postgres): %s",
			config.MaskDSN(describe(pc)), strings.Join(strings.Fields(err.Error()), " "))
	}
	return pool, nil
}

func describe(pc *pgxpool.Config) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s", pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.User, pc.ConnConfig.Database)
}
