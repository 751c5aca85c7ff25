package chaos

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Every cluster scenario but the baseline injects a fault; --cluster with "all"
// selects the cluster scenarios, baseline first. (Selection by name: TestSelect.)
func TestSelectCluster(t *testing.T) {
	t.Parallel()
	for _, sc := range ClusterScenarios()[1:] {
		require.NotNil(t, sc.Fault, sc.Name)
	}
	sel, err := selectFor(Options{Cluster: true, Scenarios: []string{"all"}})
	require.NoError(t, err)
	require.Equal(t, "cluster-baseline", sel[0].Name)
}
