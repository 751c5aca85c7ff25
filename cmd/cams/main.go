// Command cams runs the reference Central Agent Mapping Service (DESIGN §4): the
// agent registry the router looks agents up in, backed by Postgres. Wiring only: the
// service is internal/camsserver.Run.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/msgrouter/msgrouter/internal/camsserver"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/service"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "rotate-secrets-key":
			// Re-encrypt every stored secret with CAMS_SECRETS_KEY, reading values
			// sealed with CAMS_SECRETS_KEY_PREVIOUS or stored in plain text.
			cfg, err := config.LoadCAMS(config.FromOS())
			if err != nil {
				service.Exit("cams", 2, err)
			}
			n, err := camsserver.RotateSecretsKey(context.Background(), cfg)
			if err != nil {
				service.Exit("cams rotate-secrets-key", 1, err)
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
	ctx, stop, cfg, log := service.Main("cams", config.LoadCAMS, func(c config.CAMS) config.Common { return c.Common })
	defer stop()
	if err := camsserver.Run(ctx, cfg, log, service.NewRegistry()); err != nil {
		stop()
		service.Exit("cams", 1, err)
	}
}
