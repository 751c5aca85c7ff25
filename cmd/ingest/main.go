// Command ingest is msgrouter's HTTP front: it validates submitted messages,
// publishes them to JetStream and answers 202 once stored (DESIGN §2). The work is
// in internal/ingest; this file reads the configuration and owns the signals.
//
// Exit status: 0 after a graceful shutdown (SIGINT/SIGTERM), 2 for an invalid
// configuration, 1 when it cannot start or the server fails.
package main

import (
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/ingest"
	"github.com/msgrouter/msgrouter/internal/service"
)

func main() {
	ctx, stop, cfg, log := service.Main("ingest", config.LoadIngest, func(c config.Ingest) config.Common { return c.Common })
	defer stop()
	if err := ingest.Run(ctx, cfg, log, service.NewRegistry()); err != nil {
		stop()
		service.Exit("ingest", 1, err)
	}
}
