package cams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/migrate"
)

// ErrPostgresUnreachable: the reference server could not reach Postgres at start.
var ErrPostgresUnreachable = errors.New("cannot reach Postgres: set DATABASE_URL or start Postgres")

// Run serves the reference CAMS on cfg.Addr until ctx is cancelled, then shuts down
// gracefully within cfg.ShutdownTimeout and returns nil. See Serve.
func Run(ctx context.Context, cfg config.CAMS, log *slog.Logger, reg *prometheus.Registry) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("CAMS_ADDR: %w", err)
	}
	return Serve(ctx, ln, cfg, log, reg)
}

// Serve is Run on a listener the caller opened (tests and an all-in-one binary use
// ":0"). It connects to Postgres (cfg.DatabaseURL), applies the CAMS migrations,
// serves the API on ln, and when ctx is cancelled stops taking connections, lets
// requests in flight finish within cfg.ShutdownTimeout and returns nil. Errors at
// start (Postgres unreachable: ErrPostgresUnreachable; bad keys; migrations) are
// returned at once. reg receives the metrics and is what /metrics shows; nil = a
// fresh registry with the Go and process collectors.
func Serve(ctx context.Context, ln net.Listener, cfg config.CAMS, log *slog.Logger, reg *prometheus.Registry) error {
	defer ln.Close()
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	keys, err := auth.Parse(cfg.AdminAPIKeys)
	if err != nil {
		return fmt.Errorf("ADMIN_API_KEYS: %w", err)
	}
	pool, err := connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := migrate.Apply(ctx, pool, migrate.CAMS)
	if err != nil {
		return fmt.Errorf("error applying the CAMS migrations: %w", err)
	}
	log.InfoContext(ctx, "CAMS migrations applied", "applied", n)

	box, err := SecretBoxFromConfig(cfg)
	if err != nil {
		return err
	}
	if box == nil {
		log.WarnContext(ctx, "CAMS_SECRETS_KEY is not set: signing secrets and inbox credentials are stored in plain text in Postgres")
	} else {
		log.InfoContext(ctx, "secrets encrypted at rest", "secrets_key_id", box.KeyID())
	}

	h := NewHandler(HandlerConfig{
		Store: NewStore(pool, WithSecretBox(box)), Logger: log, Registerer: reg, Gatherer: reg,
		AdminKeys: keys, Version: config.Version,
	})
	srv := httpapi.NewServer(cfg.Addr, h, log)
	servers := []*http.Server{srv}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if cfg.PprofAddr != "" {
		ps := pprofServer(cfg.PprofAddr, log)
		servers = append(servers, ps)
		go func() { errc <- ps.ListenAndServe() }()
	}
	log.InfoContext(ctx, "CAMS listening", "addr", ln.Addr().String(), "admin_api_keys", keys.Len())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		serveErr = fmt.Errorf("error serving the CAMS API: %w", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			log.WarnContext(sctx, "CAMS shutdown timed out: closing the remaining connections", "error", err)
			_ = s.Close()
		}
	}
	if serveErr == nil {
		log.InfoContext(sctx, "CAMS stopped")
	}
	return serveErr
}

// SecretBoxFromConfig builds the SecretBox of CAMS_SECRETS_KEY (and
// CAMS_SECRETS_KEY_PREVIOUS); nil, nil when no key is set. Errors name the variable.
func SecretBoxFromConfig(cfg config.CAMS) (*SecretBox, error) {
	if cfg.SecretsKey == "" {
		return nil, nil
	}
	cur, err := ParseSecretsKey(cfg.SecretsKey)
	if err != nil {
		return nil, fmt.Errorf("CAMS_SECRETS_KEY: %w", err)
	}
	var prev []byte
	if cfg.SecretsKeyPrevious != "" {
		if prev, err = ParseSecretsKey(cfg.SecretsKeyPrevious); err != nil {
			return nil, fmt.Errorf("CAMS_SECRETS_KEY_PREVIOUS: %w", err)
		}
	}
	return NewSecretBox(cur, prev)
}

// RotateSecretsKey is `cams rotate-secrets-key`: it connects to cfg.DatabaseURL,
// applies the migrations, and re-encrypts every stored secret with
// CAMS_SECRETS_KEY, opening values sealed with CAMS_SECRETS_KEY_PREVIOUS (or stored
// in plain text). Safe to run while CAMS serves; running it twice changes nothing
// but the nonces. It returns how many agents' secrets it rewrote.
func RotateSecretsKey(ctx context.Context, cfg config.CAMS) (int, error) {
	box, err := SecretBoxFromConfig(cfg)
	if err != nil {
		return 0, err
	}
	if box == nil {
		return 0, errors.New("CAMS_SECRETS_KEY: must be set to the key to encrypt with (and CAMS_SECRETS_KEY_PREVIOUS to the old one)")
	}
	pool, err := connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	if _, err := migrate.Apply(ctx, pool, migrate.CAMS); err != nil {
		return 0, fmt.Errorf("error applying the CAMS migrations: %w", err)
	}
	return NewStore(pool, WithSecretBox(box)).RotateSecrets(ctx, 500)
}

func connect(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPostgresUnreachable, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		// pgx lists one line per address tried: keep the error on one line.
		return nil, fmt.Errorf("%w (%s:%d): %s", ErrPostgresUnreachable, pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, strings.Join(strings.Fields(err.Error()), " "))
	}
	return pool, nil
}

func pprofServer(addr string, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s := httpapi.NewServer(addr, mux, log)
	s.WriteTimeout = 0 // profiles stream for as long as asked
	return s
}
