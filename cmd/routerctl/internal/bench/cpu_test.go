package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// A real line of /proc/<pid>/stat (proc(5)), with a command name that holds spaces
// and parentheses: utime (field 14) 1234 and stime (field 15) 567.
const statLine = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 3177 0 0 0 1234 567 0 0 20 0 9 0 5179 1283166208 10331 18446744073709551615 1 1 0 0 0 0 0 4096 17663 0 0 0 17 1 0 0 0 0 0\n"

func TestParseStat(t *testing.T) {
	comm, ticks, err := parseStat([]byte(statLine))
	require.NoError(t, err)
	require.Equal(t, "a (weird) name", comm)
	require.EqualValues(t, 1234+567, ticks)

	for _, bad := range []string{
		"",
		"4242 no parentheses S 1 2 3",
		"4242 (short) S 1 2 3",
		"4242 (x) S 1 4242 4242 0 -1 4194560 3177 0 0 0 12x4 567 0 0",
		"4242 (x) S 1 4242 4242 0 -1 4194560 3177 0 0 0 1234 -5 0 0",
	} {
		_, _, err := parseStat([]byte(bad))
		require.Error(t, err, "%q", bad)
	}
}

func TestParseStatOfThisProcess(t *testing.T) {
	data, err := os.ReadFile("/proc/self/stat")
	require.NoError(t, err)
	comm, _, err := parseStat(data)
	require.NoError(t, err)
	want, err := os.ReadFile("/proc/self/comm")
	require.NoError(t, err)
	require.Equal(t, string(want[:len(want)-1]), comm)
}

func TestParseCPUProcess(t *testing.T) {
	for in, want := range map[string]CPUProcess{
		"router=123":                  {Name: "router", PID: 123},
		"nats=comm:nats-server":       {Name: "nats", Comm: "nats-server"},
		"pg=comm:postgres:bench_db_1": {Name: "pg", Comm: "postgres", CmdlineContains: "bench_db_1"},
	} {
		got, err := ParseCPUProcess(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "router", "=12", "router=", "router=0", "router=-3", "router=abc", "x=comm:"} {
		_, err := ParseCPUProcess(bad)
		require.ErrorIs(t, err, ErrConfig, "%q", bad)
	}
}

func sample(m map[string]map[int]uint64) cpuSample { return cpuSample{byPID: m} }

func TestBudgetArithmetic(t *testing.T) {
	procs := []CPUProcess{{Name: "router", PID: 10}, {Name: "postgres", Comm: "postgres"}, {Name: "gone", PID: 30}}
	start := sample(map[string]map[int]uint64{
		"router":   {10: 1000},
		"postgres": {20: 50, 21: 70, 22: 900}, // 22 exits in the window
		"gone":     {30: 5},
	})
	end := sample(map[string]map[int]uint64{
		"router":   {10: 1300},                // +300 ticks = 3 s
		"postgres": {20: 150, 21: 20, 23: 40}, // +100; 21 is a reused PID: counts 20; 23 is new: 40
		"gone":     {},
	})
	got := budget(procs, start, end, 10, 20_000)
	require.Equal(t, []CPUBudget{
		{Process: "router", Processes: 1, CPUSeconds: 3, CoresUsed: 0.3, MicrosPerMessage: 150},
		{Process: "postgres", Processes: 3, CPUSeconds: 1.6, CoresUsed: 0.16, MicrosPerMessage: 80, Exited: 1},
		{Process: "gone", Processes: 0, CPUSeconds: 0, Exited: 1},
		{Process: "total", Processes: 4, CPUSeconds: 4.6, CoresUsed: 0.46, MicrosPerMessage: 230, Exited: 2},
	}, roundBudget(got))

	// No messages, no window: CPU is still reported, per-message figures are not.
	got = budget(procs[:1], start, end, 0, 0)
	require.Equal(t, 3.0, got[0].CPUSeconds)
	require.Zero(t, got[0].MicrosPerMessage)
	require.Zero(t, got[0].CoresUsed)
}

// roundBudget removes float noise (1.6 s / 20,000 is not exact in binary).
func roundBudget(bs []CPUBudget) []CPUBudget {
	r := func(f float64) float64 { v, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', 6, 64), 64); return v }
	for i := range bs {
		bs[i].CPUSeconds, bs[i].CoresUsed, bs[i].MicrosPerMessage = r(bs[i].CPUSeconds), r(bs[i].CoresUsed), r(bs[i].MicrosPerMessage)
	}
	return bs
}

// TestSampleCPUFromProcTree samples a /proc built in a directory: by PID, by
// command name, and by command name and command line.
func TestSampleCPUFromProcTree(t *testing.T) {
	root := t.TempDir()
	write := func(pid int, comm, cmdline string, utime, stime int) {
		dir := filepath.Join(root, strconv.Itoa(pid))
		require.NoError(t, os.MkdirAll(dir, 0o755))
		stat := strconv.Itoa(pid) + " (" + comm + ") S 1 1 1 0 -1 0 0 0 0 0 " + strconv.Itoa(utime) + " " + strconv.Itoa(stime) + " 0 0 20 0 1 0 1 0 0\n"
		require.NoError(t, os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmdline), 0o644))
	}
	write(100, "router", "./bin/router\x00", 10, 5)
	write(200, "postgres", "postgres: root bench_a 127.0.0.1(5000) idle", 7, 3)
	write(201, "postgres", "postgres: root other_db 127.0.0.1(5001) idle", 1000, 1000)
	write(202, "postgres", "postgres: walwriter", 4, 4)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "self"), 0o755)) // not a PID: ignored
	old := procRoot
	procRoot = root
	t.Cleanup(func() { procRoot = old })

	s := sampleCPU([]CPUProcess{
		{Name: "router", PID: 100},
		{Name: "missing", PID: 999},
		{Name: "pg-bench", Comm: "postgres", CmdlineContains: "bench_a"},
		{Name: "pg-all", Comm: "postgres"},
	})
	require.Equal(t, map[int]uint64{100: 15}, s.byPID["router"])
	require.Empty(t, s.byPID["missing"])
	require.Equal(t, map[int]uint64{200: 10}, s.byPID["pg-bench"])
	require.Equal(t, map[int]uint64{200: 10, 201: 2000, 202: 8}, s.byPID["pg-all"])
}

func TestScrapeCounters(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `# HELP msgrouter_outbox_waits_total Rows put back.
# TYPE msgrouter_outbox_waits_total counter
msgrouter_outbox_waits_total{reason="lane_full"} 266927
msgrouter_outbox_waits_total{reason="breaker_open"} 3
msgrouter_outbox_claimed_total 1.2e+05
msgrouter_delivery_http_dials_total 64
msgrouter_other_total 9
`)
	}))
	t.Cleanup(srv.Close)
	got := scrapeCounters(context.Background(), srv.URL, drainCounters)
	require.Equal(t, map[string]float64{
		`msgrouter_outbox_waits_total{reason="lane_full"}`:    266927,
		`msgrouter_outbox_waits_total{reason="breaker_open"}`: 3,
		`msgrouter_outbox_claimed_total`:                      120000,
		`msgrouter_delivery_http_dials_total`:                 64,
	}, got)
	require.Empty(t, scrapeCounters(context.Background(), srv.URL+"/x", []string{"nothing_here"}))
	require.Empty(t, scrapeCounters(context.Background(), "http://127.0.0.1:1/metrics", drainCounters))
}
