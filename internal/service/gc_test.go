package service

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRuntimeDefaults(t *testing.T) {
	t.Parallel()
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	limit := func(n int64, ok bool) func() (int64, bool) { return func() (int64, bool) { return n, ok } }

	gc, mem := runtimeDefaults(env(nil), limit(1<<30, true))
	require.Equal(t, DefaultGCPercent, gc, "GOGC unset: 200")
	require.Equal(t, int64(751619276), mem, "GOMEMLIMIT unset under a cgroup limit: 70 % of it")

	gc, mem = runtimeDefaults(env(nil), limit(0, false))
	require.Equal(t, DefaultGCPercent, gc)
	require.Zero(t, mem, "no cgroup limit: no memory limit")

	gc, mem = runtimeDefaults(env(map[string]string{"GOGC": "100", "GOMEMLIMIT": "512MiB"}), limit(1<<30, true))
	require.Zero(t, gc, "GOGC set: the runtime already applied it")
	require.Zero(t, mem, "GOMEMLIMIT set: the runtime already applied it")

	gc, mem = runtimeDefaults(env(map[string]string{"GOGC": "off"}), limit(1<<30, true))
	require.Zero(t, gc)
	require.Equal(t, int64(751619276), mem)
}

func TestReadCgroupMax(t *testing.T) {
	// Not parallel: it swaps the file read.
	dir := t.TempDir()
	old := cgroupMemoryMax
	t.Cleanup(func() { cgroupMemoryMax = old })
	for content, want := range map[string]int64{"max\n": 0, "1073741824\n": 1 << 30, "garbage": 0} {
		cgroupMemoryMax = filepath.Join(dir, "memory.max")
		require.NoError(t, os.WriteFile(cgroupMemoryMax, []byte(content), 0o600))
		n, ok := readCgroupMax()
		require.Equal(t, want, n, content)
		require.Equal(t, want > 0, ok, content)
	}
	cgroupMemoryMax = filepath.Join(dir, "absent")
	_, ok := readCgroupMax()
	require.False(t, ok)
}
