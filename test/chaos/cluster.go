package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterSize is how many nats-server processes the cluster mode runs (DESIGN §8.5:
// any one of three may be killed, restarted or lose its store).
const ClusterSize = 3

// routerStream is the contract stream (internal/stream.Name), spelled out so the
// harness stays a black-box client of the binaries.
const routerStream = "ROUTER_MESSAGES"

// natsCluster is ClusterSize nats-server processes routed to each other on loopback,
// each with its own store directory that outlives the process, so kill -9, restarts
// and a wiped store are the real thing.
type natsCluster struct {
	nodes []*natsServer
	names []string // server names, as stream info reports its leader and replicas
	dirs  []string // store directories
}

func newNATSCluster(binary, dir string) (*natsCluster, error) {
	c := &natsCluster{}
	routePorts := make([]int, ClusterSize)
	var routes []string
	for i := range routePorts {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		routePorts[i] = p
		routes = append(routes, "nats://"+hostPort(p))
	}
	for i := range ClusterSize {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		name := "n" + strconv.Itoa(i+1)
		store := filepath.Join(dir, "jetstream-"+name)
		c.names = append(c.names, name)
		c.dirs = append(c.dirs, store)
		c.nodes = append(c.nodes, &natsServer{
			port: port,
			url:  "nats://" + hostPort(port),
			proc: &Proc{
				Name: "nats-" + name, Path: binary,
				Args: []string{"-js", "-sd", store, "-a", "127.0.0.1", "-p", strconv.Itoa(port),
					"--name", name, "--cluster_name", "chaos", "--cluster", "nats://" + hostPort(routePorts[i]),
					"--routes", strings.Join(routes, ",")},
				Env:     baseEnv(),
				LogPath: filepath.Join(dir, "nats-"+name+".log"),
			},
		})
	}
	return c, nil
}

// url is every node's client URL, a NATS_URL value.
func (c *natsCluster) url() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, n.url)
	}
	return strings.Join(urls, ",")
}

// start launches every node that is not running and waits until each answers
// JetStream requests (which needs a meta leader, so a quorum).
func (c *natsCluster) start(ctx context.Context) error {
	for _, n := range c.nodes {
		if !n.proc.Running() {
			if err := n.proc.Start(); err != nil {
				return err
			}
		}
	}
	for _, n := range c.nodes {
		if err := n.waitReady(ctx, 60*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func (c *natsCluster) stop() error {
	var errs []error
	for _, n := range c.nodes {
		if n.proc.Running() {
			errs = append(errs, n.stop())
		}
	}
	return errors.Join(errs...)
}

func (c *natsCluster) procs() []*Proc {
	var out []*Proc
	for _, n := range c.nodes {
		out = append(out, n.proc)
	}
	return out
}

// node returns the node whose server name is name.
func (c *natsCluster) node(name string) (int, error) {
	for i, n := range c.names {
		if n == name {
			return i, nil
		}
	}
	return -1, fmt.Errorf("no node named %q", name)
}

// leader returns the index of stream's leader.
func (c *natsCluster) leader(ctx context.Context, js jetstream.JetStream, stream string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		info, err := streamInfo(ctx, js, stream)
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
			return c.node(info.Cluster.Leader)
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("stream %s has no leader: %v", stream, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func streamInfo(ctx context.Context, js jetstream.JetStream, stream string) (*jetstream.StreamInfo, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

// waitHealthy waits until each stream has a leader and every replica is online and
// current, so the next fault starts from a whole cluster.
func (c *natsCluster) waitHealthy(ctx context.Context, js jetstream.JetStream, timeout time.Duration, streams ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var why string
	for {
		why = ""
		for _, name := range streams {
			ictx, icancel := context.WithTimeout(ctx, 2*time.Second)
			info, err := streamInfo(ictx, js, name)
			icancel()
			switch {
			case err != nil:
				why = fmt.Sprintf("stream %s: %v", name, err)
			case info.Cluster == nil || info.Cluster.Leader == "":
				why = fmt.Sprintf("stream %s has no leader", name)
			case len(info.Cluster.Replicas) != ClusterSize-1:
				why = fmt.Sprintf("stream %s has %d followers", name, len(info.Cluster.Replicas))
			default:
				for _, r := range info.Cluster.Replicas {
					if r.Offline || !r.Current {
						why = fmt.Sprintf("stream %s: replica %s is not current", name, r.Name)
					}
				}
			}
			if why != "" {
				break
			}
		}
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not healthy within %s: %s", timeout, why)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// natsURL is the NATS_URL of the binaries: every node in cluster mode.
func (h *harness) natsURL() string {
	if h.cluster != nil {
		return h.cluster.url()
	}
	return h.nats.url
}

// startNATS starts the single nats-server, or the cluster in cluster mode.
func (h *harness) startNATS(ctx context.Context) error {
	if !h.opts.Cluster {
		var err error
		if h.nats, err = newNATSServer(h.opts.NATSServer, h.dir); err != nil {
			return err
		}
		return h.nats.start(ctx)
	}
	c, err := newNATSCluster(h.opts.NATSServer, h.dir)
	if err != nil {
		return err
	}
	h.cluster = c
	h.nats = c.nodes[0] // what single-node code paths see; scenarios use h.cluster
	return c.start(ctx)
}

// clusterEnv is what the cluster mode adds to (and overrides in) the binaries'
// environment: R3 streams (DESIGN §7), and the default BREAKER_OPEN_TIMEOUT (30s)
// instead of the suite's 2s, so a NATS inbox election that held deliveries for a full
// open timeout would show in the recovery time (DESIGN §5, issue 9).
func (h *harness) clusterEnv() []string {
	if h.cluster != nil {
		return []string{"STREAM_REPLICAS=" + strconv.Itoa(ClusterSize), "BREAKER_OPEN_TIMEOUT=30s"}
	}
	return nil
}

// inboxReplicas is the replica count of the harness's NATS inbox stream.
func (h *harness) inboxReplicas() int {
	if h.cluster != nil {
		return ClusterSize
	}
	return 1
}

// resetNATS restarts what a fault left stopped and, on a cluster, waits until both
// streams are whole again.
func (h *harness) resetNATS(ctx context.Context) error {
	if h.cluster == nil {
		if !h.nats.proc.Running() {
			return h.nats.start(ctx)
		}
		return nil
	}
	if err := h.cluster.start(ctx); err != nil {
		return err
	}
	return h.cluster.waitHealthy(ctx, h.js, 90*time.Second, routerStream, inboxStream)
}

// wipe removes node i's whole store (it must be stopped).
func (c *natsCluster) wipe(i int) error {
	if c.nodes[i].proc.Running() {
		return fmt.Errorf("%s is running", c.nodes[i].proc.Name)
	}
	return os.RemoveAll(c.dirs[i])
}

// connectCluster is the harness's own client connection.
func connectNATS(url string) (*nats.Conn, error) {
	return nats.Connect(url, nats.Name("msgrouter-chaos"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
}
