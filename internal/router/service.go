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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/backoff"
	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/cams"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/consumer"
	"github.com/msgrouter/msgrouter/internal/delivery"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/migrate"
	"github.com/msgrouter/msgrouter/internal/outbox"
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
	// AckWait overrides the consumer's AckWait (tests). Zero keeps 30s.
	AckWait time.Duration
	// WrapHandler wraps the takeover handler (fault injection in tests).
	WrapHandler func(consumer.Handler) consumer.Handler
}

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
	st, err := stream.Ensure(ctx, js)
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
	})
	if err != nil {
		return fmt.Errorf("DELIVERY_SIGNING_SECRETS: %w", err)
	}
	defer httpDeliverer.Close()
	store := outbox.NewStore(pool)
	var takeover *Takeover
	dispatcher := outbox.New(outbox.Config{
		Store: store,
		Deliverer: delivery.Router{
			cams.TypeNATSSubject:  delivery.NewNATS(js),
			cams.TypeHTTPEndpoint: httpDeliverer,
		},
		Breakers: breaker.NewSet(breaker.Settings{
			Failures: uint32(cfg.BreakerFailures), OpenTimeout: cfg.BreakerOpenTimeout, Metrics: breakerMetrics,
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
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("error reading stream %s: %w", stream.Name, err)
	}
	takeover.SetStream(info.Config.Name, info.Created)
	consCfg := ConsumerConfig()
	if o.AckWait > 0 {
		consCfg.AckWait = o.AckWait
	}
	handler := consumer.Handler(takeover.Handle)
	if o.WrapHandler != nil {
		handler = o.WrapHandler(handler)
	}
	cons, err := consumer.New(ctx, consumer.Config{
		Stream:   st,
		Consumer: consCfg,
		Handler:  handler,
		Paused:   func() bool { return !camsClient.Available() },
		Recreate: func(ctx context.Context) (jetstream.Stream, error) {
			st, err := stream.Ensure(ctx, js)
			if err != nil {
				return nil, err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return nil, err
			}
			takeover.SetStream(info.Config.Name, info.Created)
			return st, nil
		},
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	janitor := outbox.NewJanitor(store, cfg.MessageRetention, log, reg)

	mux := httpapi.NewMux()
	(&admin{store: store, dispatcher: dispatcher}).routes(mux)
	httpapi.HealthRoutes(mux, config.Version,
		httpapi.Check{Name: "nats", Check: func(r *http.Request) error { return stream.Ready(r.Context(), nc, js) }},
		httpapi.Check{Name: "postgres", Check: func(r *http.Request) error {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			return pool.Ping(ctx)
		}},
	)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	srv := httpapi.NewServer(cfg.Addr, httpapi.Instrument(httpapi.Recover(adminKeys.Require(mux, auth.OpenPaths), log), mux, "router", reg), log)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("ROUTER_ADDR: cannot listen on %s: %w", cfg.Addr, err)
	}

	if err := dispatcher.Start(ctx); err != nil {
		return err
	}
	if err := cons.Start(ctx); err != nil {
		return err
	}
	janitor.Start(ctx)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("router ready", slog.String("addr", ln.Addr().String()))
	if o.Ready != nil {
		o.Ready <- ln.Addr().String()
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("admin server failed: %w", err)
	}
	log.Info("router stopping", slog.Duration("shutdown_timeout", cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	errs = append(errs, cons.Stop(sctx))
	errs = append(errs, dispatcher.Stop(sctx))
	janitor.Stop()
	errs = append(errs, srv.Shutdown(sctx))
	if err := nc.Drain(); err != nil {
		errs = append(errs, err)
	}
	log.Info("router stopped")
	return errors.Join(errs...)
}

// OpenPool connects to Postgres. Every connection gets an
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
	pc.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
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
