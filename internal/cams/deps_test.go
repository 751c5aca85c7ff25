package cams

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestClientDoesNotLinkTheServer (issue 10): the router links this client, never
// the reference server nor what only the server needs (Postgres, migrations,
// server-side HTTP helpers).
func TestClientDoesNotLinkTheServer(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/msgrouter/msgrouter/internal/cams/mapping", "the list is the real one")
	for _, d := range deps {
		for _, f := range []string{
			"github.com/msgrouter/msgrouter/internal/camsserver", "github.com/msgrouter/msgrouter/internal/migrate",
			"github.com/msgrouter/msgrouter/internal/httpapi", "github.com/msgrouter/msgrouter/internal/auth",
			"github.com/jackc/",
		} {
			require.False(t, strings.HasPrefix(d, f), "internal/cams must not depend on %s", d)
		}
	}
}
