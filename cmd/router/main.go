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
	"os"

	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/migrate"
	"github.com/msgrouter/msgrouter/internal/router"
	"github.com/msgrouter/msgrouter/internal/service"
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
	ctx, stop, cfg, log := service.Main("router", config.LoadRouter, func(c config.Router) config.Common { return c.Common })
	defer stop()

	if cmd == "migrate" {
		n, err := migrateOnly(ctx, cfg.DatabaseURL)
		if err != nil {
			stop()
			service.Exit("router", 1, err)
		}
		fmt.Printf("applied %d migration(s)\n", n)
		return
	}

	tp, flush, err := service.Telemetry(ctx, "msgrouter-router")
	if err != nil {
		stop()
		service.Exit("router", 2, err)
	}
	pp, err := service.Pprof(cfg.PprofAddr, log)
	if err != nil {
		stop()
		service.Exit("router", 2, err)
	}
	// Telemetry and pprof outlive the router's own parts: started first, stopped last.
	g := service.NewGroup(log)
	if err := g.Start(ctx, cfg.ShutdownTimeout, service.Part{Name: "telemetry", Service: flush}, service.Part{Name: "pprof", Service: pp}); err != nil {
		stop()
		service.Exit("router", 1, err)
	}
	err = router.Run(ctx, cfg, router.Options{Logger: log, Registry: service.NewRegistry(), TracerProvider: tp})
	g.StopWithin(ctx, cfg.ShutdownTimeout)
	if err != nil {
		stop()
		service.Exit("router", 1, err)
	}
}

func migrateOnly(ctx context.Context, url string) (int, error) {
	pool, err := service.OpenPool(ctx, url)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	return migrate.Apply(ctx, pool, migrate.Router)
}
