package chaos

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Proc is a child process the harness owns: one binary with its environment, its
// output appended to a log file, killable and restartable. An exit the harness did
// not ask for is remembered (Unexpected), because a crashed replica is a finding.
type Proc struct {
	Name    string
	Path    string
	Args    []string
	Env     []string // the whole environment of the child
	LogPath string
	// Ready is the URL that answers 200 once the process serves; "" = none.
	Ready string

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{}
	exitErr    error
	expected   bool
	unexpected []string
}

// Start launches the process. Its output is appended to LogPath with a marker line,
// so a restarted process keeps one log.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s is already running", p.Name)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("error opening the log of %s: %w", p.Name, err)
	}
	fmt.Fprintf(logf, "--- chaos: starting %s at %s\n", p.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = p.Env
	cmd.Stdout, cmd.Stderr = logf, logf
	// The child dies with the harness even if the harness is killed itself, so a
	// crashed run leaves no replica behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("error starting %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.expected, p.exitErr = cmd, done, false, nil
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.exitErr = err
		if !p.expected {
			p.unexpected = append(p.unexpected, fmt.Sprintf("%s exited on its own at %s: %v", p.Name, time.Now().Format("15:04:05.000"), exitText(err)))
		}
		p.cmd = nil
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Unexpected returns the exits nobody asked for.
func (p *Proc) Unexpected() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.unexpected...)
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	p.signal(syscall.SIGKILL, 0)
}

// Stop sends SIGTERM and waits up to grace for the process to exit, then kills it.
// It returns the exit error of a graceful exit (nil for status 0), or an error
// saying it had to be killed.
func (p *Proc) Stop(grace time.Duration) error {
	return p.signal(syscall.SIGTERM, grace)
}

func (p *Proc) signal(sig syscall.Signal, grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return nil
	}
	p.expected = true
	_ = cmd.Process.Signal(sig)
	p.mu.Unlock()
	if sig == syscall.SIGKILL {
		<-done
		return nil
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.exitErr
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not exit within %s of SIGTERM and was killed", p.Name, grace)
	}
}

// WaitReady polls the Ready URL until it answers 200, the process exits, or ctx ends.
func (p *Proc) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		if !p.Running() {
			return fmt.Errorf("%s exited before it was ready (log: %s)", p.Name, p.LogPath)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.Ready, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s within %s (log: %s)", p.Name, p.Ready, timeout, p.LogPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePort asks the kernel for a free loopback port. Another process could take it
// before the child binds it; on loopback in a test run that has not been seen.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("error finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// baseEnv is what children inherit from the harness: only what finding binaries and
// a home directory needs, so no stray DATABASE_URL or OTEL_* changes their behaviour.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	// Nor a developer's ./.env: every binary reads one from its working directory.
	return append(env, "ENV_FILE="+os.DevNull)
}
