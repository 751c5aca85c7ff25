// Command cams runs the reference Central Agent Mapping Service (DESIGN §4): the
// agent registry the router looks agents up in, backed by Postgres. Wiring only: the
// service is internal/cams.Run.
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

	"github.com/msgrouter/msgrouter/internal/cams"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/logging"
)

func main() {
	env := config.FromOS() // also reads ENV_FILE or ./.env (issue 14)
	cfg, err := config.LoadCAMS(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cams:", err)
		os.Exit(2)
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cams:", err)
		os.Exit(2)
	}
	env.LogNotices(context.Background(), log)
	log.LogAttrs(context.Background(), slog.LevelInfo, "cams starting",
		append(cfg.LogAttrs(), slog.String("version", config.Version))...)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if err := cams.Run(ctx, cfg, log, reg); err != nil {
		fmt.Fprintln(os.Stderr, "cams:", err)
		os.Exit(1)
	}
}
