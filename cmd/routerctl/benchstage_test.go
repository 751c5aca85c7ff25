package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// routerctl bench --stage ingest against the real ingest handler (single messages
// and batches) on an in-process JetStream server: the run's table, its CPU budget
// and its --summary line.
func TestBenchIngestStage(t *testing.T) {
	t.Parallel()
	ns, st, srv := ingestOnJetStream(t)
	c := cli{env: map[string]string{"INGEST_URL": srv.URL, "NATS_URL": ns.URL}}
	summary := filepath.Join(t.TempDir(), "summary.tsv")

	o := c.run(t, "bench", "--quiet", "--stage", "ingest", "--count", "200", "--clients", "4",
		"--cpu", "me="+itoa(os.Getpid()), "--summary", summary, "--name", "ing-single")
	require.Equal(t, 0, o.code, o.stderr)
	require.Contains(t, o.stdout, "stage ingest")
	require.Contains(t, o.stdout, "CPU budget over")
	require.Contains(t, o.stdout, "200 messages accepted")
	o = c.run(t, "bench", "--quiet", "--stage", "ingest", "--count", "200", "--batch", "50", "--clients", "2",
		"--cpu", "me="+itoa(os.Getpid()), "--summary", summary, "--name", "ing-batch")
	require.Equal(t, 0, o.code, o.stderr)
	require.Contains(t, o.stdout, "batches of 50")

	data, err := os.ReadFile(summary)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	require.Len(t, lines, 2)
	require.True(t, strings.HasPrefix(lines[0], "ing-single\tingest\t-\t"), lines[0])
	require.True(t, strings.HasPrefix(lines[1], "ing-batch\tingest\t-\t4\t50\t"), lines[1])
	require.Contains(t, lines[1], "me=")
	info, err := st.Info(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, 400, info.State.Msgs)

	for _, args := range [][]string{
		{"--stage", "drain"},                  // no --router-cmd
		{"--stage", "warp", "--count", "1"},   // unknown stage
		{"--cpu", "nonsense", "--count", "1"}, // bad --cpu
		{"--batch", "5", "--mode", "nats", "--count", "1"},
	} {
		o := c.run(t, append([]string{"bench"}, args...)...)
		require.Equal(t, 2, o.code, "%v: %s", args, o.stderr)
	}
}

// The router command runs as one process (its PID is the command's, for the CPU
// budget) and stops on SIGINT; one that ignores SIGINT is an error.
func TestStartRouterCmd(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "router.log")
	log, err := os.Create(path)
	require.NoError(t, err)
	t.Cleanup(func() { log.Close() })
	start := startRouterCmd(`sh -c 'trap "echo bye; exit 0" INT; echo up; while :; do sleep 0.05; done'`, log)
	pids, stop, err := start(context.Background())
	require.NoError(t, err)
	require.Len(t, pids, 1)
	require.NoError(t, syscall.Kill(pids[0], 0), "the PID is the running command's")
	// SIGINT only once the trap is set, or the shell dies of it instead.
	require.Eventually(t, func() bool {
		data, _ := os.ReadFile(path)
		return strings.Contains(string(data), "up")
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, stop())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(data), "bye")

	start = startRouterCmd(`sh -c 'exit 3'`, io.Discard)
	pids, stop, err = start(context.Background())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return syscall.Kill(pids[0], 0) != nil }, 10*time.Second, 10*time.Millisecond, "exited and reaped")
	require.ErrorContains(t, stop(), "exited with exit status 3")
}

func itoa(i int) string { return strconv.Itoa(i) }
