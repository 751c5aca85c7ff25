package chaos

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSelectCluster(t *testing.T) {
	t.Parallel()
	all, err := SelectCluster(nil)
	require.NoError(t, err)
	require.Len(t, all, len(ClusterScenarios()))
	some, err := SelectCluster([]string{"leader-kill", " node-wipe"})
	require.NoError(t, err)
	require.Equal(t, "leader-kill", some[0].Name)
	require.Equal(t, "node-wipe", some[1].Name)
	_, err = SelectCluster([]string{"router-kill"})
	require.ErrorContains(t, err, "unknown cluster scenario")

	for _, sc := range ClusterScenarios()[1:] {
		require.NotNil(t, sc.Fault, sc.Name)
	}
	sel, err := selectFor(Options{Cluster: true, Scenarios: []string{"all"}})
	require.NoError(t, err)
	require.Equal(t, "cluster-baseline", sel[0].Name)
}
