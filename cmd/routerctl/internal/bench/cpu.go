package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ClockTicks is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, which the
// Linux ABI fixes at 100 on every architecture Go supports (proc(5), "measured in
// clock ticks (divide by sysconf(_SC_CLK_TCK))"; the kernel converts its internal
// HZ to USER_HZ for userspace). One tick is 10 ms of CPU, so a budget needs a window
// of at least a few seconds to be meaningful.
const ClockTicks = 100

// CPUProcess names a group of processes whose CPU time a run charges to one line of
// the budget: one process by PID, or every process whose command name (comm, as in
// /proc/<pid>/comm, at most 15 bytes) is Comm and — when CmdlineContains is set —
// whose command line contains that text (Postgres rewrites each backend's command
// line to "postgres: user database host state", so a database name picks out the
// backends of one system under test on a shared server).
type CPUProcess struct {
	Name            string
	PID             int
	Comm            string
	CmdlineContains string
}

// ParseCPUProcess reads a --cpu flag value: NAME=PID, NAME=comm:COMM or
// NAME=comm:COMM:TEXT (command line contains TEXT).
func ParseCPUProcess(s string) (CPUProcess, error) {
	name, spec, ok := strings.Cut(s, "=")
	if !ok || name == "" || spec == "" {
		return CPUProcess{}, fmt.Errorf("%w: --cpu %q: want NAME=PID or NAME=comm:COMM[:TEXT]", ErrConfig, s)
	}
	if rest, ok := strings.CutPrefix(spec, "comm:"); ok {
		comm, text, _ := strings.Cut(rest, ":")
		if comm == "" {
			return CPUProcess{}, fmt.Errorf("%w: --cpu %q: empty command name", ErrConfig, s)
		}
		return CPUProcess{Name: name, Comm: comm, CmdlineContains: text}, nil
	}
	pid, err := strconv.Atoi(spec)
	if err != nil || pid <= 0 {
		return CPUProcess{}, fmt.Errorf("%w: --cpu %q: %q is neither a PID nor comm:NAME", ErrConfig, s, spec)
	}
	return CPUProcess{Name: name, PID: pid}, nil
}

// DefaultCPUProcesses are charged when a run names none: every Postgres process and
// every nats-server on the machine. On a shared machine they include other users'
// work; name the system's own processes with --cpu for a clean budget.
func DefaultCPUProcesses() []CPUProcess {
	return []CPUProcess{{Name: "nats-server", Comm: "nats-server"}, {Name: "postgres", Comm: "postgres"}}
}

// parseStat returns the command name and utime+stime (clock ticks) of one
// /proc/<pid>/stat line. The command name sits in parentheses and may itself hold
// spaces and parentheses, so the fields are counted from the last ')' (proc(5):
// field 2 comm, 3 state, …, 14 utime, 15 stime).
func parseStat(data []byte) (comm string, ticks uint64, err error) {
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return "", 0, errors.New("no command name in parentheses")
	}
	comm = string(data[open+1 : end])
	fields := strings.Fields(string(data[end+1:]))
	// fields[0] is field 3 (state), so field n is fields[n-3].
	if len(fields) < 13 {
		return "", 0, fmt.Errorf("%d fields after the command name, want at least 13", len(fields))
	}
	utime, err := strconv.ParseUint(fields[14-3], 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseUint(fields[15-3], 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("stime: %w", err)
	}
	return comm, utime + stime, nil
}

// cpuSample is the CPU time of each named group at one moment, in clock ticks, and
// per PID, so a process that appears between two samples counts from zero and one
// that exits is noticed.
type cpuSample struct {
	byPID map[string]map[int]uint64
}

// procRoot is /proc; tests point it elsewhere.
var procRoot = "/proc"

// sampleCPU reads the CPU time of every process of procs. A PID that cannot be read
// (it exited) is left out.
func sampleCPU(procs []CPUProcess) cpuSample {
	s := cpuSample{byPID: map[string]map[int]uint64{}}
	var all []int
	for _, p := range procs {
		if p.PID == 0 && all == nil {
			all = listPIDs()
		}
	}
	for _, p := range procs {
		m := map[int]uint64{}
		s.byPID[p.Name] = m
		if p.PID != 0 {
			if _, t, ok := readStat(p.PID); ok {
				m[p.PID] = t
			}
			continue
		}
		for _, pid := range all {
			comm, t, ok := readStat(pid)
			if !ok || comm != p.Comm {
				continue
			}
			if p.CmdlineContains != "" {
				cl, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"))
				if err != nil || !bytes.Contains(cl, []byte(p.CmdlineContains)) {
					continue
				}
			}
			m[pid] = t
		}
	}
	return s
}

func readStat(pid int) (string, uint64, bool) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, false
	}
	comm, t, err := parseStat(data)
	return comm, t, err == nil
}

func listPIDs() []int {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// CPUBudget is one line of a run's CPU budget: what a group of processes spent in
// the measured window.
type CPUBudget struct {
	Process string `json:"process"`
	// Processes is how many processes the line covers at the window's end.
	Processes int `json:"processes"`
	// CPUSeconds is user+system CPU time spent in the window.
	CPUSeconds float64 `json:"cpuSeconds"`
	// CoresUsed is CPUSeconds over the window's wall time (1 = one core busy).
	CoresUsed float64 `json:"coresUsed"`
	// MicrosPerMessage is CPU µs per message of the window (delivered, or accepted
	// for the ingest stage).
	MicrosPerMessage float64 `json:"microsPerMessage"`
	// Exited counts processes seen at the start and gone at the end: their CPU in
	// the window is missing from the line.
	Exited int `json:"exited,omitempty"`
}

// budget turns two samples into per-message figures. A PID only in the end sample
// counts all its CPU time (it started in the window); one only in the start sample
// counts nothing and is reported as exited. messages ≤ 0 leaves MicrosPerMessage 0.
func budget(procs []CPUProcess, start, end cpuSample, wallSeconds float64, messages int64) []CPUBudget {
	out := make([]CPUBudget, 0, len(procs)+1)
	var total CPUBudget
	total.Process = "total"
	for _, p := range procs {
		b := CPUBudget{Process: p.Name}
		var ticks uint64
		for pid, t1 := range end.byPID[p.Name] {
			b.Processes++
			t0 := start.byPID[p.Name][pid]
			if t1 >= t0 { // a reused PID could go backwards: count it from zero then
				ticks += t1 - t0
			} else {
				ticks += t1
			}
		}
		for pid := range start.byPID[p.Name] {
			if _, ok := end.byPID[p.Name][pid]; !ok {
				b.Exited++
			}
		}
		b.CPUSeconds = float64(ticks) / ClockTicks
		fill(&b, wallSeconds, messages)
		out = append(out, b)
		total.Processes += b.Processes
		total.CPUSeconds += b.CPUSeconds
		total.Exited += b.Exited
	}
	fill(&total, wallSeconds, messages)
	return append(out, total)
}

func fill(b *CPUBudget, wallSeconds float64, messages int64) {
	if wallSeconds > 0 {
		b.CoresUsed = b.CPUSeconds / wallSeconds
	}
	if messages > 0 {
		b.MicrosPerMessage = b.CPUSeconds * 1e6 / float64(messages)
	}
}
