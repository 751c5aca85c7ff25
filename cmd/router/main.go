// Command router runs a router replica (DESIGN §1): it takes messages over from
// JetStream into the Postgres outbox, delivers them to agent inboxes, and serves the
// admin API. Any number of replicas share the consumer and the outbox.
//
//	router           run a replica (applies pending migrations first)
//	router migrate   apply pending migrations and exit
//
// Wiring only: the service is internal/router.Run.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/logging"
	"github.com/msgrouter/msgrouter/internal/migrate"
	"github.com/msgrouter/msgrouter/internal/pprof"
	"github.com/msgrouter/msgrouter/internal/router"
	"github.com/msgrouter/msgrouter/internal/telemetry"
)

func main() {
	cmd := ""
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	switch cmd {
	case "", "run", "migrate":
	case "-h", "--help", "help":
		fmt.Println("usage: router [run|migrate]\n\nConfiguration comes from the environment; see the README.")
		return
	default:
		fmt.Fprintf(os.Stderr, "router: unknown command %q (want run or migrate)\n", cmd)
		os.Exit(2)
	}
	env := config.FromOS() // also reads ENV_FILE or ./.env (issue 14)
	cfg, err := config.LoadRouter(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, "router:", err)
		os.Exit(2)
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "router:", err)
		os.Exit(2)
	}
	env.LogNotices(context.Background(), log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if cmd == "migrate" {
		pool, err := router.OpenPool(ctx, cfg.DatabaseURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "router:", err)
			os.Exit(1)
		}
		defer pool.Close()
		n, err := migrate.Apply(ctx, pool, migrate.Router)
		if err != nil {
			fmt.Fprintln(os.Stderr, "router:", err)
			os.Exit(1)
		}
		fmt.Printf("applied %d migration(s)\n", n)
		return
	}

	log.LogAttrs(ctx, slog.LevelInfo, "router starting", append(cfg.LogAttrs(), slog.String("version", config.Version))...)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	tp, shutdownTracing, err := telemetry.Setup(ctx, "msgrouter-router", config.Version)
	if err != nil {
		fmt.Fprintln(os.Stderr, "router:", err)
		os.Exit(2)
	}
	defer shutdownTracing(context.Background()) //nolint:errcheck
	if cfg.PprofAddr != "" {
		stopPprof, err := pprof.Start(cfg.PprofAddr, log)
		if err != nil {
			fmt.Fprintln(os.Stderr, "router: PPROF_ADDR:", err)
			os.Exit(2)
		}
		defer stopPprof()
	}
	if err := router.Run(ctx, cfg, router.Options{Logger: log, Registry: reg, TracerProvider: tp}); err != nil {
		fmt.Fprintln(os.Stderr, "router:", err)
		os.Exit(1)
	}
}
