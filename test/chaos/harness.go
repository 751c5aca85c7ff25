package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

// Replicas is how many router replicas run.
const Replicas = 3

// harness is the system under test and the fakes around it.
type harness struct {
	opts Options
	log  *slog.Logger
	dir  string
	nats *natsServer
	// cluster is the NATS cluster in cluster mode (nats is then its first node).
	cluster *natsCluster
	db      *database
	cams    *fakeCAMS
	okHTTP  *httpInbox // a healthy HTTP inbox
	faulty  *httpInbox // the HTTP inbox scenarios break
	ingest  *Proc
	router  []*Proc

	nc        *nats.Conn
	js        jetstream.JetStream
	natsInbox *arrivals
	natsNext  uint64 // next inbox stream sequence to read

	agents []*agent

	// batch is the running scenario's messages; a writer lock on gate holds the
	// load back (a fault that must quiesce the system first).
	batch []*tracked
	gate  sync.RWMutex
}

// Agent addresses.
const (
	agentNATS   = "nats-agent@chaos.test"
	agentHTTP   = "http-agent@chaos.test"
	agentFaulty = "faulty-agent@chaos.test"
	agentGhost  = "ghost-agent@chaos.test" // not in CAMS
)

func setup(ctx context.Context, o Options) (h *harness, err error) {
	h = &harness{opts: o, log: o.Log, natsInbox: newArrivals(), natsNext: 1}
	defer func() {
		if err != nil {
			h.close(context.WithoutCancel(ctx), false, true)
		}
	}()
	if h.dir, err = os.MkdirTemp("", "msgrouter-chaos-"); err != nil {
		return h, fmt.Errorf("error creating the temp dir: %w", err)
	}
	for _, b := range []string{"ingest", "router"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
			return h, fmt.Errorf("binary %s not found in %s (go build -o %s/ ./cmd/ingest ./cmd/router): %w", b, o.BinDir, o.BinDir, err)
		}
	}

	if err = h.startNATS(ctx); err != nil {
		return h, err
	}
	h.nc, err = connectNATS(h.natsURL())
	if err != nil {
		return h, fmt.Errorf("error connecting to nats-server: %w", err)
	}
	if h.js, err = jetstream.New(h.nc); err != nil {
		return h, err
	}
	if err = ensureInboxStream(ctx, h.js, h.inboxReplicas()); err != nil {
		return h, err
	}

	if h.db, err = createDatabase(ctx, o.DatabaseURL); err != nil {
		return h, err
	}
	if h.cams, err = newFakeCAMS(); err != nil {
		return h, err
	}
	if h.okHTTP, err = newHTTPInbox(); err != nil {
		return h, err
	}
	if h.faulty, err = newHTTPInbox(); err != nil {
		return h, err
	}
	h.cams.register(agentNATS, mapping.TypeNATSSubject, inboxSubject)
	h.cams.register(agentHTTP, mapping.TypeHTTPEndpoint, h.okHTTP.url())
	h.cams.register(agentFaulty, mapping.TypeHTTPEndpoint, h.faulty.url())
	h.agents = h.standardAgents(45, 35, 19)

	ingestPort, err := freePort()
	if err != nil {
		return h, err
	}
	h.ingest = &Proc{
		Name: "ingest", Path: filepath.Join(o.BinDir, "ingest"), LogPath: filepath.Join(h.dir, "ingest.log"),
		Env: append(append(baseEnv(),
			"NATS_URL="+h.natsURL(), "INGEST_ADDR="+hostPort(ingestPort),
			"LOG_LEVEL=warn", "LOG_FORMAT=json", "SHUTDOWN_TIMEOUT=5s",
		), h.clusterEnv()...),
		Ready: "http://" + hostPort(ingestPort) + "/health/ready",
	}
	for i := range Replicas {
		port, err := freePort()
		if err != nil {
			return h, err
		}
		name := "router-" + strconv.Itoa(i+1)
		h.router = append(h.router, &Proc{
			Name: name, Path: filepath.Join(o.BinDir, "router"), LogPath: filepath.Join(h.dir, name+".log"),
			Env: append(append(baseEnv(),
				"NATS_URL="+h.natsURL(), "DATABASE_URL="+h.db.url, "CAMS_API_URL="+h.cams.url(),
				"ROUTER_ADDR="+hostPort(port),
				"DELIVERY_ALLOW_PRIVATE_NETWORKS=true",
				"DELIVERY_BACKOFF_INITIAL=100ms", "DELIVERY_BACKOFF_MAX=2s", "DELIVERY_TIMEOUT=2s",
				"BREAKER_OPEN_TIMEOUT=2s", "CAMS_TIMEOUT=500ms", "CAMS_CACHE_TTL=2s",
				"LOG_LEVEL=warn", "LOG_FORMAT=json", "SHUTDOWN_TIMEOUT=5s",
			), h.clusterEnv()...),
			Ready: "http://" + hostPort(port) + "/health/ready",
		})
	}
	// Start the replicas at once: concurrent migrations at start are part of the
	// contract (DESIGN §7).
	for _, p := range append([]*Proc{h.ingest}, h.router...) {
		if err := p.Start(); err != nil {
			return h, err
		}
	}
	for _, p := range append([]*Proc{h.ingest}, h.router...) {
		if err := p.WaitReady(ctx, 60*time.Second); err != nil {
			return h, err
		}
	}
	return h, nil
}

func (h *harness) ingestURL() string {
	return "http://" + h.ingest.Ready[len("http://"):len(h.ingest.Ready)-len("/health/ready")]
}

// liveRouters returns the admin API base URLs of the replicas that are running.
func (h *harness) liveRouters() []string {
	var out []string
	for _, p := range h.router {
		if p.Running() {
			out = append(out, p.Ready[:len(p.Ready)-len("/health/ready")])
		}
	}
	return out
}

// reset makes the system whole before a scenario: fakes healthy, every process up
// and ready.
func (h *harness) reset(ctx context.Context) error {
	errs := []error{h.cams.setMode(CAMSUp), h.okHTTP.setMode(InboxOK), h.faulty.setMode(InboxOK)}
	errs = append(errs, h.resetNATS(ctx))
	if err := h.db.waitReady(ctx, 60*time.Second); err != nil {
		errs = append(errs, err)
	}
	for _, p := range append([]*Proc{h.ingest}, h.router...) {
		if !p.Running() {
			errs = append(errs, p.Start())
		}
	}
	for _, p := range append([]*Proc{h.ingest}, h.router...) {
		errs = append(errs, p.WaitReady(ctx, 60*time.Second))
	}
	return errors.Join(errs...)
}

// procs returns every child process.
func (h *harness) procs() []*Proc {
	var out []*Proc
	if h.cluster != nil {
		out = append(out, h.cluster.procs()...)
	} else if h.nats != nil {
		out = append(out, h.nats.proc)
	}
	if h.ingest != nil {
		out = append(out, h.ingest)
	}
	return append(out, h.router...)
}

// logPaths lists the logs of the child processes.
func (h *harness) logPaths() []string {
	var out []string
	for _, p := range h.procs() {
		out = append(out, p.LogPath)
	}
	return out
}

// close stops everything it started: ingest and routers with SIGTERM (their
// graceful shutdown must exit 0 within SHUTDOWN_TIMEOUT; anything else is
// returned), nats-server, the fakes, the database; then removes the temp dir unless
// keep. When keepLogs, or when stopping went wrong, the logs stay (the JetStream
// store goes).
func (h *harness) close(ctx context.Context, keep, keepLogs bool) []string {
	var problems []string
	var stoppers []chan string
	for _, p := range append([]*Proc{h.ingest}, h.router...) {
		if p == nil || !p.Running() {
			continue
		}
		ch := make(chan string, 1)
		stoppers = append(stoppers, ch)
		go func() {
			if err := p.Stop(15 * time.Second); err != nil {
				ch <- fmt.Sprintf("%s on SIGTERM: %v (log: %s)", p.Name, err, p.LogPath)
			}
			close(ch)
		}()
	}
	for _, ch := range stoppers {
		if p, ok := <-ch; ok {
			problems = append(problems, p)
		}
	}
	if h.nc != nil {
		h.nc.Close()
	}
	if h.cluster != nil {
		_ = h.cluster.stop()
	} else if h.nats != nil {
		_ = h.nats.stop()
	}
	if h.cams != nil {
		h.cams.sw.down()
	}
	if h.okHTTP != nil {
		h.okHTTP.sw.down()
	}
	if h.faulty != nil {
		h.faulty.setMode(InboxOK) //nolint:errcheck // frees hanging handlers
		h.faulty.sw.down()
	}
	if h.db != nil && !keep {
		if err := h.db.drop(ctx); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if h.dir != "" && !keep {
		if len(problems) > 0 || keepLogs {
			_ = os.RemoveAll(filepath.Join(h.dir, "jetstream"))
			if h.cluster != nil {
				for _, d := range h.cluster.dirs {
					_ = os.RemoveAll(d)
				}
			}
		} else {
			_ = os.RemoveAll(h.dir)
		}
	}
	return problems
}

// standardAgents is the load's four agents with the given weights for the NATS,
// HTTP and faulty HTTP inboxes; the unknown agent weighs 1.
func (h *harness) standardAgents(natsWeight, httpWeight, faultyWeight int) []*agent {
	return []*agent{
		{address: agentNATS, kind: "NATS inbox", weight: natsWeight, expect: statusDelivered, arrivals: h.natsInbox},
		{address: agentHTTP, kind: "HTTP inbox", weight: httpWeight, expect: statusDelivered, arrivals: h.okHTTP.arrivals},
		{address: agentFaulty, kind: "faulty HTTP inbox", weight: faultyWeight, expect: statusDelivered, arrivals: h.faulty.arrivals},
		{address: agentGhost, kind: "unknown agent", weight: 1, expect: statusRejected},
	}
}
