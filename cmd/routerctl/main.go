// Command routerctl is the operators' CLI for msgrouter (DESIGN §10): look messages
// up, list and replay dead letters, send test messages, manage agents in CAMS, watch
// an inbox subject, and benchmark a running system.
//
//	routerctl <command> [flags]
//
// Exit status: 0 on success, 1 when something was not found or failed, 2 on bad
// usage. `routerctl help` lists the commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/msgrouter/msgrouter/internal/config"
)

func main() {
	// ROUTER_URL, CAMS_API_URL, DATABASE_URL ... may come from ENV_FILE or ./.env,
	// as for every binary (issue 14); the environment wins.
	if _, err := config.LoadDotEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "routerctl:", err)
		os.Exit(exitUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := newApp(os.Stdin, os.Stdout, os.Stderr, os.Getenv).run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
