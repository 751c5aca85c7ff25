package service

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Go runtime defaults of every binary (issue 11, lever 8; BENCHMARKS.md "Settings
// that matter").
const (
	// DefaultGCPercent is GOGC when the variable is unset: the services' garbage is
	// per request and per message, and 200 took ~13 % off ingest's CPU per message
	// against Go's 100 (BENCHMARKS.md, lever 4) for a larger heap.
	DefaultGCPercent = 200
	// MemoryLimitShare is the share of the cgroup's memory limit GOMEMLIMIT gets
	// when the variable is unset, so that the larger GOGC never runs a container
	// into its limit: the GC works harder instead as the heap nears it.
	MemoryLimitShare = 0.7
)

// cgroupMemoryMax is the cgroup v2 memory limit file of the process's cgroup.
var cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// RuntimeDefaults applies DefaultGCPercent when GOGC is unset, and a memory limit
// of MemoryLimitShare × the cgroup (v2) memory limit when GOMEMLIMIT is unset and
// the process runs under such a limit. Variables that are set always win (the
// runtime read them at start). Main calls it; it reports what it applied.
func RuntimeDefaults() (gcPercent int, memLimit int64) {
	gcPercent, memLimit = runtimeDefaults(os.Getenv, readCgroupMax)
	if gcPercent > 0 {
		debug.SetGCPercent(gcPercent)
	}
	if memLimit > 0 {
		debug.SetMemoryLimit(memLimit)
	}
	return gcPercent, memLimit
}

// runtimeDefaults decides RuntimeDefaults' settings: 0 leaves one as it is.
func runtimeDefaults(getenv func(string) string, cgroupMax func() (int64, bool)) (gcPercent int, memLimit int64) {
	if getenv("GOGC") == "" {
		gcPercent = DefaultGCPercent
	}
	if getenv("GOMEMLIMIT") == "" {
		if limit, ok := cgroupMax(); ok {
			memLimit = int64(float64(limit) * MemoryLimitShare)
		}
	}
	return gcPercent, memLimit
}

// readCgroupMax reads the cgroup v2 memory limit: false when there is none ("max"),
// no cgroup v2, or the file cannot be read.
func readCgroupMax() (int64, bool) {
	b, err := os.ReadFile(cgroupMemoryMax)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n == math.MaxInt64 {
		return 0, false
	}
	return n, true
}
