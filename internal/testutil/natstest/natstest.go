// Package natstest starts a real, in-process NATS server with JetStream for tests:
// isolated (its own port and store directory), current (the nats-server/v2 module),
// and gone when the test ends.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a running test server.
type Server struct {
	*server.Server
	URL  string
	opts *server.Options
}

// Start runs a JetStream server on a random loopback port until t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := run(t, options(t))
	t.Cleanup(s.Shutdown)
	return s
}

func run(t testing.TB, opts *server.Options) *Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("natstest: server not ready within 10s")
	}
	// Keep the port across restarts.
	o := *opts
	o.Port = ns.Addr().(*net.TCPAddr).Port
	return &Server{Server: ns, URL: ns.ClientURL(), opts: &o}
}

// Restart shuts the server down and starts it again on the same port and store, as a
// NATS restart in production would.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Shutdown()
	s.WaitForShutdown()
	n := run(t, s.opts)
	s.Server = n.Server
	t.Cleanup(n.Shutdown)
}

// RestartEmpty shuts the server down and starts it again on the same port with an
// empty store: a NATS server that lost its disk. Streams, consumers and messages
// are gone; stream sequences start again at 1.
func (s *Server) RestartEmpty(t testing.TB) {
	t.Helper()
	s.Shutdown()
	s.WaitForShutdown()
	o := *s.opts
	o.StoreDir = t.TempDir()
	n := run(t, &o)
	s.Server, s.opts = n.Server, n.opts
	t.Cleanup(n.Shutdown)
}

// Connect returns a connection and a JetStream handle, closed when t ends.
func (s *Server) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return connect(t, s.URL)
}

// connect dials url, reconnecting for ever, and closes the connection when t ends.
func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// options are a test server's: loopback, a random port, JetStream with a store of
// its own that t removes, quiet, and deaf to signals.
func options(t testing.TB) *server.Options {
	return &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
}
