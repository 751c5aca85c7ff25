package cmdtest

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Process is a command started by Start.
type Process struct {
	cmd    *exec.Cmd
	exited chan error
}

// Start starts cmd, waits for it on a goroutine and kills it when t ends if it
// still runs. A start failure fails t.
func Start(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("cmdtest: starting %s: %v", cmd.Path, err)
	}
	p := &Process{cmd: cmd, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// WaitReady polls url with GET every 50 ms until it answers 200 OK. It fails t,
// with what the command wrote to its Stderr (when that is a fmt.Stringer such as
// a bytes.Buffer), if the process exits first or is not ready within.
func (p *Process) WaitReady(t testing.TB, url string, within time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.After(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-p.exited:
			t.Fatalf("cmdtest: %s exited before %s answered 200 (%v); stderr:\n%s", p.name(), url, err, p.stderr())
		case <-deadline:
			t.Fatalf("cmdtest: %s: %s did not answer 200 within %v; stderr:\n%s", p.name(), url, within, p.killedStderr())
		case <-tick.C:
		}
	}
}

// Terminate sends SIGTERM and returns how the process ended (exec.Cmd.Wait's
// error: nil for exit status 0). It fails t if the process has not exited within.
func (p *Process) Terminate(t testing.TB, within time.Duration) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("cmdtest: signalling %s: %v", p.name(), err)
	}
	select {
	case err := <-p.exited:
		return err
	case <-time.After(within):
		t.Fatalf("cmdtest: %s did not exit within %v of SIGTERM; stderr:\n%s", p.name(), within, p.killedStderr())
		return nil
	}
}

func (p *Process) name() string { return filepath.Base(p.cmd.Path) }

// killedStderr kills the process and returns its stderr once it has ended (the
// buffer is written until then).
func (p *Process) killedStderr() string {
	_ = p.cmd.Process.Kill()
	<-p.exited
	return p.stderr()
}

// stderr is what the ended process wrote to its Stderr.
func (p *Process) stderr() string {
	if s, ok := p.cmd.Stderr.(fmt.Stringer); ok {
		return s.String()
	}
	return "(not captured)"
}
