package deploytest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/stretchr/testify/require"
)

// TestComposeLoads loads docker-compose.yml with the Compose Specification's Go loader
// (schema validation, interpolation with an empty environment, merge keys) and checks
// the shape DESIGN §11 asks for.
func TestComposeLoads(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithName("msgrouter"), cli.WithProfiles([]string{"observability", "demo"}))
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err)

	for _, n := range []string{"nats-1", "nats-2", "nats-3", "postgres", "cams", "ingest", "router"} {
		require.Contains(t, p.Services, n)
	}
	router := p.Services["router"]
	require.Empty(t, router.Ports, "no host ports, so --scale router=N works")
	require.Empty(t, router.ContainerName, "a fixed container name would stop --scale")
	require.NotNil(t, router.Deploy)
	require.NotNil(t, router.Deploy.Replicas)
	require.Equal(t, 2, *router.Deploy.Replicas)
	for _, n := range []string{"router", "ingest"} {
		env := p.Services[n].Environment
		require.Equal(t, "3", *env["STREAM_REPLICAS"], "%s creates R3 streams", n)
		require.Equal(t, "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222", *env["NATS_URL"])
		for _, dep := range []string{"nats-1", "nats-2", "nats-3"} {
			require.Equal(t, "service_healthy", p.Services[n].DependsOn[dep].Condition, "%s waits for %s", n, dep)
		}
	}
	for name, s := range p.Services {
		if len(s.Profiles) > 0 || name == "ingest" {
			continue
		}
		require.Empty(t, s.Ports, "%s publishes no host port: only ingest's is published", name)
	}
	ports := p.Services["ingest"].Ports
	require.Len(t, ports, 1)
	require.Equal(t, uint32(8080), ports[0].Target)
	require.Equal(t, "8080", ports[0].Published)
}
