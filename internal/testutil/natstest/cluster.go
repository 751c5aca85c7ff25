package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a running in-process JetStream cluster: n servers routed to each other
// on loopback, each with its own store, so R3 streams and leader elections are real.
type Cluster struct {
	Servers []*Server
	// URL lists every server's client URL, comma-separated (a NATS_URL value).
	URL string
}

// StartCluster runs an n-node JetStream cluster on loopback until t ends and waits
// until JetStream has a meta leader.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	c := &Cluster{}
	var urls []string
	for i := range n {
		opts := options(t)
		opts.ServerName = fmt.Sprintf("n%d", i+1)
		opts.Cluster = server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: ports[i]}
		opts.Routes = routes
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("natstest: %v", err)
		}
		ns.Start()
		t.Cleanup(ns.Shutdown)
		// Generous: under -race on a busy machine three servers and their routes
		// take a while; the test waits on the condition, not on a sleep.
		if !ns.ReadyForConnections(60 * time.Second) {
			t.Fatal("natstest: cluster server not ready within 60s")
		}
		s := &Server{Server: ns, URL: ns.ClientURL(), opts: opts}
		c.Servers = append(c.Servers, s)
		urls = append(urls, s.URL)
	}
	c.URL = strings.Join(urls, ",")
	deadline := time.Now().Add(60 * time.Second)
	for !c.ready(n) {
		if time.Now().After(deadline) {
			t.Fatal("natstest: the cluster elected no JetStream meta leader within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c
}

// ready reports whether one server leads JetStream's meta group, it sees all n
// peers with JetStream, and every server is current with the meta group.
func (c *Cluster) ready(n int) bool {
	var leader *Server
	for _, s := range c.Servers {
		if s.JetStreamIsLeader() {
			leader = s
		}
		if !s.JetStreamIsCurrent() {
			return false
		}
	}
	return leader != nil && len(leader.JetStreamClusterPeers()) == n
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Connect returns a connection to every server of the cluster and a JetStream
// handle, closed when t ends.
func (c *Cluster) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return connect(t, c.URL)
}
