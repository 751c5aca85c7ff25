// Package layout_test guards the import graph that the layout promises (issue 10,
// "Done when"; STYLE.md "Layout shows the architecture"): the production binaries
// never link the embedded NATS server, and the routing decision stays pure.
package layout_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/msgrouter/msgrouter"

// deps returns the transitive dependencies of pkgs, as `go list -deps` prints them.
func deps(t *testing.T, pkgs ...string) []string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command is needed to list dependencies")
	out, err := exec.Command(gobin, append([]string{"list", "-deps"}, pkgs...)...).Output()
	require.NoError(t, err, "go list -deps %v", pkgs)
	return strings.Fields(string(out))
}

func forbidden(list []string, prefixes ...string) []string {
	var hits []string
	for _, p := range list {
		if slices.ContainsFunc(prefixes, func(f string) bool { return p == f || strings.HasPrefix(p, f+"/") }) {
			hits = append(hits, p)
		}
	}
	return hits
}

// TestProductionBinariesDoNotLinkNATSServer: the binaries of the production image
// (Dockerfile: ingest, router, cams, routerctl) talk to a NATS server; only the dev
// runner (cmd/msgrouter), the chaos harness and tests embed one (issue 10 item 4).
func TestProductionBinariesDoNotLinkNATSServer(t *testing.T) {
	t.Parallel()
	list := deps(t, module+"/cmd/ingest", module+"/cmd/router", module+"/cmd/cams", module+"/cmd/routerctl")
	require.Contains(t, list, module+"/cmd/router", "go list saw the binaries")
	require.Empty(t, forbidden(list, "github.com/nats-io/nats-server/v2"))
}

// TestRoutingIsPure: the routing decision imports neither Postgres nor HTTP (issue 10
// item 2; STYLE.md: "internal/routing ... pure: no I/O imports").
func TestRoutingIsPure(t *testing.T) {
	t.Parallel()
	list := deps(t, module+"/internal/routing")
	require.Contains(t, list, module+"/internal/routing")
	require.Empty(t, forbidden(list, "github.com/jackc/pgx/v5", "net/http", "github.com/nats-io/nats-server/v2"))
}
