package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"

	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/logging"
	"github.com/msgrouter/msgrouter/internal/pguuid"
	"github.com/msgrouter/msgrouter/internal/pprof"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/telemetry"
)

// NewRegistry returns the registry a binary's /metrics shows: the Go runtime and
// process collectors, and whatever its parts register (STYLE.md, convention 8: no
// default-registry globals).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Main is the prologue every binary shares: the Go runtime defaults
// (RuntimeDefaults), load the configuration from the
// environment (and ENV_FILE or ./.env, issue 14), build the logger, log the
// .env notices and the start line, and return a context cancelled by SIGINT or
// SIGTERM. An invalid configuration exits with status 2 and one line naming the
// variable (DESIGN §10). name prefixes that line and the start line
// ("starting msgrouter <name>"); common picks LOG_LEVEL and LOG_FORMAT out of the
// loaded configuration.
func Main[C interface{ LogAttrs() []slog.Attr }](name string, load func(*config.Env) (C, error), common func(C) config.Common) (
	ctx context.Context, stop context.CancelFunc, cfg C, log *slog.Logger) {
	env := config.FromOS()
	cfg, err := load(env)
	if err != nil {
		Exit(name, 2, err)
	}
	c := common(cfg)
	log, err = logging.New(os.Stderr, c.LogLevel, c.LogFormat)
	if err != nil {
		Exit(name, 2, err)
	}
	env.LogNotices(context.Background(), log)
	gcPercent, memLimit := RuntimeDefaults()
	log.LogAttrs(context.Background(), slog.LevelInfo, "starting msgrouter "+name,
		append(cfg.LogAttrs(), slog.String("version", config.Version),
			slog.Int("gogc_default", gcPercent), slog.Int64("gomemlimit_default_bytes", memLimit))...)
	ctx, stop = signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	return ctx, stop, cfg, log
}

// Exit prints err on one plain line prefixed with name, whatever LOG_FORMAT says
// (this is what an operator reads when a process will not start), and exits with
// code: 2 for an invalid configuration, 1 when it cannot start or fails.
func Exit(name string, code int, err error) {
	fmt.Fprintln(os.Stderr, name+":", err)
	os.Exit(code)
}

// Telemetry sets tracing up for serviceName (OTEL_* applies to every binary,
// internal/telemetry) and returns the TracerProvider with a Service whose Stop
// flushes the spans still buffered, bounded by its context. Put it first in a
// Group so it stops last.
func Telemetry(ctx context.Context, serviceName string) (trace.TracerProvider, Service, error) {
	tp, shutdown, err := telemetry.Setup(ctx, serviceName, config.Version)
	if err != nil {
		return nil, nil, err
	}
	return tp, &Funcs{StopFunc: func(ctx context.Context) error {
		if err := shutdown(ctx); err != nil {
			return fmt.Errorf("error flushing traces: %w", err)
		}
		return nil
	}}, nil
}

// StartTelemetry is Telemetry started as g's next part (the first, so it stops
// last), for a service that sets its own telemetry up. stopTimeout bounds the
// stop of what g had started when the start fails.
func (g *Group) StartTelemetry(ctx context.Context, stopTimeout time.Duration, serviceName string) (trace.TracerProvider, error) {
	tp, flush, err := Telemetry(ctx, serviceName)
	if err != nil {
		return nil, err
	}
	if err := g.Start(ctx, stopTimeout, Part{Name: "telemetry", Service: flush}); err != nil {
		return nil, err
	}
	return tp, nil
}

// Pprof listens on addr (PPROF_ADDR) and returns the profiling server as a
// Service, or nil, nil when addr is empty (off). Errors name the variable.
func Pprof(addr string, log *slog.Logger) (*HTTPServer, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("PPROF_ADDR: error listening on %s: %w", addr, err)
	}
	srv := httpapi.NewServer(addr, pprof.Handler(), log)
	srv.WriteTimeout = 0 // profiles stream for as long as asked
	log.Info("pprof listening", "pprof_addr", ln.Addr().String())
	return &HTTPServer{Name: "pprof", Server: srv, Listener: ln, Grace: time.Second}, nil
}

// NATS connects to NATS (stream.Connect: credentials, TLS, reconnecting
// forever), opens JetStream and makes sure ROUTER_MESSAGES exists with the
// configured settings (stream.EnsureWith), within ensureTimeout. The returned
// Service drains the connection on Stop (what it still buffers is flushed); the
// caller still closes nc when it returns. name is the client name NATS shows.
func NATS(ctx context.Context, c config.NATS, name string, ensureTimeout time.Duration, log *slog.Logger, opts ...nats.Option) (
	*nats.Conn, jetstream.JetStream, jetstream.Stream, error) {
	nc, err := stream.Connect(c, name, opts...)
	if err != nil {
		return nil, nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("error opening JetStream: %w", err)
	}
	ectx, cancel := context.WithTimeout(ctx, ensureTimeout)
	defer cancel()
	st, err := stream.EnsureWith(ectx, js, stream.SettingsFrom(c.Stream), log)
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return nc, js, st, nil
}

// Drain is the Service that drains nc on Stop and waits, bounded by Stop's
// context, until the connection is closed. Put it first in a Group so it stops
// last, once nothing publishes any more.
func Drain(nc *nats.Conn) Service {
	return &Funcs{StopFunc: func(ctx context.Context) error {
		closed := make(chan struct{})
		nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := nc.Drain(); err != nil {
			return fmt.Errorf("error draining NATS: %w", err)
		}
		return Wait(ctx, "NATS drain", closed)
	}}
}

// ErrPostgresUnreachable is wrapped by OpenPool's error when Postgres did not
// answer a ping within 10 s.
var ErrPostgresUnreachable = errors.New("cannot reach Postgres")

// OpenPool connects to Postgres as the router (application_name
// msgrouter-router). See OpenPoolAs.
func OpenPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	return OpenPoolAs(ctx, url, "msgrouter-router")
}

// OpenPoolAs connects to Postgres. DATABASE_URL may list several hosts with
// target_session_attrs=read-write (pgx tries them in order and keeps the one that
// accepts writes, so a failover of an HA Postgres needs no configuration change), and
// may set default_query_exec_mode. Every connection gets an
// idle_in_transaction_session_timeout, so a transaction left open by a bug or a
// stalled replica cannot hold locks (or block vacuum) for long. appName is the
// connections' application_name (pg_stat_activity).
func OpenPoolAs(ctx context.Context, url, appName string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if pc.MaxConns < 8 {
		pc.MaxConns = 8
	}
	pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "60000"
	pc.ConnConfig.RuntimeParams["application_name"] = appName
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
		return nil, fmt.Errorf("%w at %s (set DATABASE_URL, or start Postgres): %s", ErrPostgresUnreachable,
			config.MaskDSN(describe(pc)), strings.Join(strings.Fields(err.Error()), " "))
	}
	return pool, nil
}

func describe(pc *pgxpool.Config) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s", pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.User, pc.ConnConfig.Database)
}
