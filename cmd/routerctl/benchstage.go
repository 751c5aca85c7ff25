package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/msgrouter/msgrouter/cmd/routerctl/internal/bench"
)

// stageFlags are bench's flags for issue 11's stages, kept apart from the load
// flags: --stage, --batch, --router-cmd, --router-log, --cpu, --summary, --name.
type stageFlags struct {
	routerCmd, routerLog string
	routerMetrics        string
	summary, name        string
	cpu                  []bench.CPUProcess
}

func (sf *stageFlags) register(fs *pflag.FlagSet, c *bench.Config) {
	fs.StringVar(&c.Stage, "stage", bench.StageAll, "all (the whole pipeline), ingest (HTTP → JetStream → 202, no router) or drain (preload --count, default 100000, into JetStream with no router, then start --router-cmd and time the drain)")
	fs.IntVar(&c.Batch, "batch", 0, "send batches of N through POST /v1/messages/batch (--mode http; --clients batches in flight)")
	fs.StringVar(&sf.routerCmd, "router-cmd", "", "drain stage: shell command that runs a router in the foreground (e.g. ./bin/router); started after the preload, stopped with SIGINT after the drain")
	fs.StringVar(&sf.routerLog, "router-log", "", "drain stage: append the router's output to this file (default: this command's stderr)")
	fs.StringVar(&sf.routerMetrics, "router-metrics", "", "drain stage: the router's /metrics URL; its outbox claim and wait counters are printed after the drain")
	fs.Func("cpu", "charge a process group in the CPU budget: NAME=PID or NAME=comm:COMM[:CMDLINE-TEXT] (repeatable; default nats-server and postgres by name)", func(s string) error {
		p, err := bench.ParseCPUProcess(s)
		if err != nil {
			return err
		}
		sf.cpu = append(sf.cpu, p)
		return nil
	})
	fs.StringVar(&sf.summary, "summary", "", "append one tab-separated line for this run to FILE (a stage table across runs)")
	fs.StringVar(&sf.name, "name", "", "name of the run in --summary (default the stage)")
}

// apply completes c after parsing.
func (sf *stageFlags) apply(a *app, c *bench.Config) error {
	c.Stage = strings.ToLower(c.Stage)
	c.CPU = sf.cpu
	if c.Stage == bench.StageDrain {
		if c.Count == 0 {
			c.Count = bench.DefaultDrainCount
		}
		if sf.routerCmd == "" {
			return usagef("--stage drain needs --router-cmd, the command that runs the router after the preload")
		}
		log := a.stderr
		if sf.routerLog != "" {
			f, err := os.OpenFile(sf.routerLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return fmt.Errorf("error opening --router-log: %w", err)
			}
			log = f // closed with the process
		}
		c.StartRouter = startRouterCmd(sf.routerCmd, log)
		if sf.routerMetrics != "" {
			c.RouterMetricsURL = sf.routerMetrics
		}
	}
	return nil
}

func (sf *stageFlags) writeSummary(c bench.Config, res *bench.Result) error {
	if sf.summary == "" {
		return nil
	}
	f, err := os.OpenFile(sf.summary, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("error opening --summary: %w", err)
	}
	name := sf.name
	if name == "" {
		name = c.Stage
	}
	_, err = fmt.Fprintln(f, bench.SummaryRow(name, res))
	return errors.Join(err, f.Close())
}

// startRouterCmd runs cmdline with sh as one child process ("exec" keeps the PID
// the router's, so its CPU is charged to it), in the caller's environment. The
// child is killed if routerctl dies (Pdeathsig). stop sends SIGINT — the router's
// graceful shutdown — and SIGKILL after 30 s.
func startRouterCmd(cmdline string, log io.Writer) bench.StartRouterFunc {
	return func(context.Context) ([]int, func() error, error) {
		cmd := exec.Command("/bin/sh", "-c", "exec "+cmdline)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return nil, nil, fmt.Errorf("error running %q: %w", cmdline, err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		stop := func() error {
			defer func() {
				if c, ok := log.(io.Closer); ok && log != os.Stderr && log != os.Stdout {
					_ = c.Close()
				}
			}()
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case err := <-done:
				var exitErr *exec.ExitError
				if errors.As(err, &exitErr) {
					return fmt.Errorf("the router (%s) exited with %v", cmdline, exitErr)
				}
				return err
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				return fmt.Errorf("the router (%s) did not stop within 30s of SIGINT: killed", cmdline)
			}
		}
		return []int{cmd.Process.Pid}, stop, nil
	}
}
