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
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "rotate-secrets-key":
			// Re-encrypt every stored secret with CAMS_SECRETS_KEY, reading values
			// sealed with CAMS_SECRETS_KEY_PREVIOUS or stored in plain text.
			n, err := cams.RotateSecretsKey(context.Background(), cfg)
			if err != nil {
				fmt.Fprintln(os.Stderr, "cams rotate-secrets-key:", err)
				os.Exit(1)
			}
			fmt.Printf("re-encrypted the secrets of %d agents\n", n)
			return
		case "-h", "--help", "help":
			fmt.Println("usage: cams                     serve the reference CAMS (DESIGN §4)\n       cams rotate-secrets-key  re-encrypt stored secrets with CAMS_SECRETS_KEY (old key: CAMS_SECRETS_KEY_PREVIOUS)")
			return
		default:
			fmt.Fprintf(os.Stderr, "cams: unknown command %q (cams --help)\n", os.Args[1])
			os.Exit(2)
		}
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
