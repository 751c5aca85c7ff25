// Package routertest runs the real router for tests: of the router itself, and
// of what checks the router's work (the audit).
package routertest

import (
	"context"
	"testing"
	"time"

	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/router"
	"github.com/msgrouter/msgrouter/internal/testutil/runtest"
)

// Start runs router.Run with cfg and o on a goroutine and returns once it
// serves, with its admin address and the channel Run's result arrives on (see
// runtest.Start). o.Ready is Start's own.
func Start(ctx context.Context, t testing.TB, cfg config.Router, o router.Options, timeout time.Duration) (string, <-chan error) {
	t.Helper()
	return runtest.Start(ctx, t, timeout, func(ctx context.Context, ready chan<- string) error {
		o.Ready = ready
		return router.Run(ctx, cfg, o)
	})
}
