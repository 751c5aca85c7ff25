package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsServer is a nats-server process with JetStream on a store directory that
// outlives it, so a kill -9 and a restart on the same directory is the real thing.
type natsServer struct {
	proc *Proc
	port int
	url  string
}

func newNATSServer(binary, dir string) (*natsServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return &natsServer{
		port: port,
		url:  "nats://" + hostPort(port),
		proc: &Proc{
			Name: "nats-server", Path: binary,
			Args:    []string{"-js", "-sd", filepath.Join(dir, "jetstream"), "-a", "127.0.0.1", "-p", strconv.Itoa(port)},
			Env:     baseEnv(),
			LogPath: filepath.Join(dir, "nats-server.log"),
		},
	}, nil
}

// start launches the server and waits until JetStream answers.
func (n *natsServer) start(ctx context.Context) error {
	if err := n.proc.Start(); err != nil {
		return err
	}
	return n.waitReady(ctx, 30*time.Second)
}

// kill is kill -9: no flush, no goodbye to clients.
func (n *natsServer) kill() { n.proc.Kill() }

func (n *natsServer) stop() error { return n.proc.Stop(5 * time.Second) }

func (n *natsServer) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if !n.proc.Running() {
			return fmt.Errorf("nats-server exited (log: %s)", n.proc.LogPath)
		}
		if err := jetStreamAnswers(ctx, n.url); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nats-server at %s: JetStream not ready within %s (log: %s)", n.url, timeout, n.proc.LogPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func jetStreamAnswers(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}
