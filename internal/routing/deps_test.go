package routing_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRoutingIsPure keeps the layout's promise (STYLE "Layout", issue 10): the
// routing decision and the CAMS data model it reads depend on no I/O. Their
// dependencies (go list -deps, tests excluded) hold no HTTP (net/http, client or
// server), no Postgres driver, no NATS, no metrics, and of this module only the
// pure packages listed here: the CAMS client (internal/cams) and the reference
// server (internal/camsserver) stay out.
func TestRoutingIsPure(t *testing.T) {
	t.Parallel()
	const module = "github.com/msgrouter/msgrouter/"
	allowedOwn := map[string]bool{
		module + "internal/routing":      true,
		module + "internal/cams/mapping": true,
		module + "internal/message":      true,
	}
	forbidden := []string{"net/http", "github.com/jackc/", "github.com/nats-io/", "github.com/prometheus/"}

	out, err := exec.Command("go", "list", "-deps", module+"internal/routing", module+"internal/cams/mapping").CombinedOutput()
	require.NoError(t, err, "%s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, module+"internal/cams/mapping", "the list is the real one")
	for _, d := range deps {
		if strings.HasPrefix(d, module) {
			require.True(t, allowedOwn[d], "internal/routing must not depend on %s", d)
			continue
		}
		for _, f := range forbidden {
			require.False(t, d == f || strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/"),
				"internal/routing must not depend on %s (through %s)", f, d)
		}
	}
}
