// Command ingest is msgrouter's HTTP front: it validates submitted messages,
// publishes them to JetStream and answers 202 once stored (DESIGN §2). The work is
// in internal/ingest; this file reads the configuration and owns the signals.
//
// Exit status: 0 after a graceful shutdown (SIGINT/SIGTERM), 2 for an invalid
// configuration, 1 when it cannot start or the server fails.
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
	"github.com/msgrouter/msgrouter/internal/ingest"
	"github.com/msgrouter/msgrouter/internal/logging"
)

func main() {
	env := config.FromOS() // also reads ENV_FILE or ./.env (issue 14)
	cfg, err := config.LoadIngest(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(2)
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(2)
	}
	env.LogNotices(context.Background(), log)
	log.LogAttrs(context.Background(), slog.LevelInfo, "starting msgrouter ingest",
		append(cfg.LogAttrs(), slog.String("version", config.Version))...)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := ingest.Run(ctx, cfg, log, reg); err != nil {
		// One plain line, whatever LOG_FORMAT says: this is what an operator reads
		// when the process will not start.
		fmt.Fprintln(os.Stderr, "ingest:", err)
		stop()
		os.Exit(1)
	}
}
