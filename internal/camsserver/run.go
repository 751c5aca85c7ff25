package camsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/migrate"
	"github.com/msgrouter/msgrouter/internal/service"
)

// ErrPostgresUnreachable: the reference server could not reach Postgres at start
// (service.ErrPostgresUnreachable).
var ErrPostgresUnreachable = service.ErrPostgresUnreachable

// Run serves the reference CAMS on cfg.Addr until ctx is cancelled, then shuts down
// gracefully within cfg.ShutdownTimeout and returns nil. See Serve.
func Run(ctx context.Context, cfg config.CAMS, log *slog.Logger, reg *prometheus.Registry, opts ...ServeOption) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("CAMS_ADDR: %w", err)
	}
	return Serve(ctx, ln, cfg, log, reg, opts...)
}

// ServeOption adjusts Run and Serve.
type ServeOption func(*serveOptions)

type serveOptions struct{ tp trace.TracerProvider }

// WithTracerProvider makes Serve use tp instead of setting telemetry up itself (a
// process running several services sets telemetry up once).
func WithTracerProvider(tp trace.TracerProvider) ServeOption {
	return func(o *serveOptions) { o.tp = tp }
}

// Serve is Run on a listener the caller opened (tests and an all-in-one binary use
// ":0"). It sets tracing up (OTEL_*, as every binary), connects to Postgres
// (cfg.DatabaseURL), applies the CAMS migrations, serves the API on ln (and pprof
// on PPROF_ADDR), and when ctx is cancelled stops taking connections, lets
// requests in flight finish within cfg.ShutdownTimeout and returns nil. Errors at
// start (Postgres unreachable: ErrPostgresUnreachable; bad keys; migrations) are
// returned at once. reg receives the metrics and is what /metrics shows; nil = a
// fresh registry with the Go and process collectors.
func Serve(ctx context.Context, ln net.Listener, cfg config.CAMS, log *slog.Logger, reg *prometheus.Registry, opts ...ServeOption) error {
	defer ln.Close()
	var o serveOptions
	for _, opt := range opts {
		opt(&o)
	}
	if reg == nil {
		reg = service.NewRegistry()
	}
	keys, err := auth.Parse(cfg.AdminAPIKeys)
	if err != nil {
		return fmt.Errorf("ADMIN_API_KEYS: %w", err)
	}
	// Started in this order and stopped in reverse on every exit path (g.Run; the
	// defer covers the paths that return before it).
	g := service.NewGroup(log)
	defer g.StopWithin(ctx, cfg.ShutdownTimeout)
	tp := o.tp
	if tp == nil {
		if tp, err = g.StartTelemetry(ctx, cfg.ShutdownTimeout, "msgrouter-cams"); err != nil {
			return err
		}
	}
	pool, err := service.OpenPoolAs(ctx, cfg.DatabaseURL, "msgrouter-cams")
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
		AdminKeys: keys, Version: config.Version, TracerProvider: tp,
	})
	pp, err := service.Pprof(cfg.PprofAddr, log)
	if err != nil {
		return err
	}
	return g.Run(ctx, cfg.ShutdownTimeout, func() {
		log.InfoContext(ctx, "CAMS listening", "addr", ln.Addr().String(), "admin_api_keys", keys.Len())
	},
		service.Part{Name: "pprof", Service: pp},
		service.Part{Name: "CAMS API", Service: &service.HTTPServer{Server: httpapi.NewServer(cfg.Addr, h, log), Listener: ln}},
	)
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
	pool, err := service.OpenPoolAs(ctx, cfg.DatabaseURL, "msgrouter-cams")
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	if _, err := migrate.Apply(ctx, pool, migrate.CAMS); err != nil {
		return 0, fmt.Errorf("error applying the CAMS migrations: %w", err)
	}
	return NewStore(pool, WithSecretBox(box)).RotateSecrets(ctx, 500)
}
