// Command msgrouter runs the whole system in one process for development and demos:
// an embedded NATS JetStream server (when NATS_URL is unset), the reference CAMS,
// ingest and a router, against Postgres from DATABASE_URL or the local defaults. It
// registers a demo agent whose inbox is a JetStream subject and prints how to send
// it a message. With --follow it prints every message that reaches the demo inbox.
//
// Production runs the three binaries (cmd/ingest, cmd/router, cmd/cams) separately;
// this command only wires the same services together.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/camsserver"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/ingest"
	"github.com/msgrouter/msgrouter/internal/logging"
	"github.com/msgrouter/msgrouter/internal/router"
	"github.com/msgrouter/msgrouter/internal/service"
	"github.com/msgrouter/msgrouter/internal/stream"
)

const (
	demoAgent   = "demo-agent@example.com"
	demoSubject = "agents.demo.inbox"
	demoStream  = "AGENT_INBOXES"
)

func main() {
	follow := flag.Bool("follow", false, "print every message that reaches the demo inbox")
	natsPort := flag.Int("nats-port", 14222, "port of the embedded NATS server (used when NATS_URL is unset)")
	dataDir := flag.String("data", ".data", "directory for the embedded NATS server's storage")
	syncAlways := flag.Bool("nats-sync-always", false, "embedded NATS server: fsync every write (sync_interval: always) instead of every 2 minutes")
	flag.Parse()
	if err := run(*follow, *natsPort, *dataDir, *syncAlways); err != nil {
		fmt.Fprintln(os.Stderr, "msgrouter:", err)
		os.Exit(1)
	}
}

func run(follow bool, natsPort int, dataDir string, syncAlways bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// Before anything reads the environment: NATS_URL may come from ./.env.
	if _, err := config.LoadDotEnv(); err != nil {
		return err
	}
	// Without NATS_URL the services use an embedded server; its URL goes into
	// their configs below, not into the process environment.
	embeddedURL := ""
	if os.Getenv("NATS_URL") == "" {
		ns, err := startNATS(natsPort, filepath.Join(dataDir, "nats"), syncAlways)
		if err != nil {
			return err
		}
		defer ns.Shutdown()
		embeddedURL = ns.ClientURL()
	}
	// The demo inbox is on loopback-free NATS; HTTP demo inboxes on this machine
	// need DELIVERY_ALLOW_PRIVATE_NETWORKS=true, set it yourself if you want them.
	env := config.FromOS()
	camsCfg, err := config.LoadCAMS(env)
	if err != nil {
		return err
	}
	ingestCfg, err := config.LoadIngest(config.FromOS())
	if err != nil {
		return err
	}
	routerEnv := config.FromOS()
	routerCfg, err := config.LoadRouter(routerEnv)
	if err != nil {
		return err
	}
	if embeddedURL != "" {
		ingestCfg.NATS.URL, routerCfg.NATS.URL = embeddedURL, embeddedURL
	}
	if _, set := os.LookupEnv("CAMS_API_URL"); !set {
		// The embedded router calls the embedded CAMS, wherever CAMS_ADDR put it
		// (not another process that happens to hold the default port).
		routerCfg.CAMSURL = camsURL(camsCfg.Addr)
	}
	base, err := logging.New(os.Stderr, routerCfg.LogLevel, routerCfg.LogFormat)
	if err != nil {
		return err
	}
	routerEnv.LogNotices(ctx, base)
	if err := checkPostgres(ctx, routerCfg.DatabaseURL); err != nil {
		return err
	}
	base.LogAttrs(ctx, slog.LevelInfo, "msgrouter (all-in-one) starting", append(routerCfg.LogAttrs(), slog.String("version", config.Version))...)
	// Telemetry and one pprof endpoint for the whole process (the services would
	// each set them up): started first, stopped last.
	tp, flush, err := service.Telemetry(ctx, "msgrouter")
	if err != nil {
		return err
	}
	pp, err := service.Pprof(routerCfg.PprofAddr, base)
	if err != nil {
		return err
	}
	camsCfg.PprofAddr, ingestCfg.PprofAddr, routerCfg.PprofAddr = "", "", ""
	g := service.NewGroup(base)
	defer g.StopWithin(ctx, routerCfg.ShutdownTimeout)
	if err := g.Start(ctx, routerCfg.ShutdownTimeout, service.Part{Name: "telemetry", Service: flush}, service.Part{Name: "pprof", Service: pp}); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	runService := func(name string, f func(reg *prometheus.Registry) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(service.NewRegistry()); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	runService("cams", func(reg *prometheus.Registry) error {
		return camsserver.Run(ctx, camsCfg, base.With("service", "cams"), reg, camsserver.WithTracerProvider(tp))
	})
	// The router applies the migrations; CAMS applies its own. Give CAMS its
	// moment so the demo agent can be registered as soon as the router is up.
	ingestReady := make(chan struct{})
	runService("ingest", func(reg *prometheus.Registry) error {
		return ingest.Run(ctx, ingestCfg, base.With("service", "ingest"), reg, ingest.WithTracerProvider(tp),
			ingest.OnReady(func(net.Addr) { close(ingestReady) }))
	})
	routerReady := make(chan string, 1)
	runService("router", func(reg *prometheus.Registry) error {
		return router.Run(ctx, routerCfg, router.Options{Logger: base.With("service", "router"), Registry: reg, TracerProvider: tp, Ready: routerReady})
	})

	var followConn *nats.Conn
	select {
	case <-routerReady:
		select {
		case <-ingestReady:
		case <-ctx.Done():
		}
	case <-ctx.Done():
	}
	if ctx.Err() == nil {
		if err := setupDemo(ctx, routerCfg.NATS, camsURL(camsCfg.Addr), firstKey(camsCfg.AdminAPIKeys)); err != nil {
			base.Warn("could not register the demo agent", slog.Any("error", err))
		} else {
			printHowTo(ingestCfg.Addr, routerCfg.Addr, camsCfg.Addr, routerCfg.NATS.URL, follow)
		}
		if follow {
			followConn, err = followInbox(routerCfg.NATS)
			if err != nil {
				base.Warn("cannot follow the demo inbox", slog.Any("error", err))
			}
		}
	}
	<-ctx.Done()
	if followConn != nil {
		followConn.Close()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func startNATS(port int, dir string, syncAlways bool) (*server.Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create %s for the embedded NATS server: %w", dir, err)
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "msgrouter-dev", Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
		SyncAlways: syncAlways,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS server did not start on 127.0.0.1:%d (port taken? use --nats-port or set NATS_URL)", port)
	}
	return ns, nil
}

func checkPostgres(ctx context.Context, url string) error {
	pool, err := router.OpenPool(ctx, url)
	if err != nil {
		return fmt.Errorf("%w; install and start PostgreSQL, or set DATABASE_URL=postgres://user:pass@host:5432/db", err)
	}
	pool.Close()
	return nil
}

// camsURL turns a listen address into a URL on loopback.
func camsURL(addr string) string {
	if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	return "http://" + addr
}

// setupDemo creates the demo inbox stream and registers the demo agent with CAMS
// (idempotent: 409 counts as done). CAMS may still be applying its migrations, so
// the registration is retried every 200ms for up to 20s; ctx cancels the wait.
// adminKey is sent as the bearer key when CAMS has ADMIN_API_KEYS.
func setupDemo(ctx context.Context, nc config.NATS, camsBase, adminKey string) error {
	conn, err := stream.Connect(nc, "msgrouter-demo-setup")
	if err != nil {
		return err
	}
	defer conn.Close()
	js, err := jetstream.New(conn)
	if err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: demoStream, Subjects: []string{"agents.>"}, MaxAge: 24 * time.Hour}); err != nil {
		return fmt.Errorf("creating stream %s: %w", demoStream, err)
	}
	body, err := json.Marshal(map[string]string{
		"aiAgentAddress": demoAgent, "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": demoSubject,
		"description": "Demo agent registered by msgrouter", "ownerTeam": "demo",
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	register := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, camsBase+"/v1/agent-inboxes", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if adminKey != "" {
			req.Header.Set("Authorization", "Bearer "+adminKey)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusConflict {
			return nil
		}
		return fmt.Errorf("CAMS answered %s", resp.Status)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := register()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("registering %s: %w (gave up: %w)", demoAgent, err, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// firstKey returns the key of the first entry of a key list ("name:key,key2,…",
// the ADMIN_API_KEYS format), or "" when the list is empty.
func firstKey(list string) string {
	for entry := range strings.SplitSeq(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" || strings.HasPrefix(entry, "#") {
			continue
		}
		if _, key, ok := strings.Cut(entry, ":"); ok {
			return strings.TrimSpace(key)
		}
		return entry
	}
	return ""
}

// printHowTo prints the start-up how-to: where each service listens, the
// operator console, and the commands to send the demo agent a message.
func printHowTo(ingestAddr, routerAddr, camsAddr, natsURL string, follow bool) {
	in, rt := camsURL(ingestAddr), camsURL(routerAddr)
	fmt.Fprintf(os.Stderr, `
msgrouter is running: ingest %s, router admin %s, CAMS %s, NATS %s

Operator console (messages, dead letters, agents): %s/console/

Send the demo agent a message:

  curl -s -X POST %s/v1/messages -H 'Content-Type: application/json' \
    -d '{"aiAgentAddress":"%s","payload":{"command":"hello","value":42}}'

See its status (use the messageId printed above):

  curl -s %s/v1/messages/<messageId>

`, in, rt, camsURL(camsAddr), natsURL, rt, in, demoAgent, rt)
	if follow {
		fmt.Fprintf(os.Stderr, "Following %s: each delivered message is printed below. Ctrl-C stops everything.\n\n", demoSubject)
	} else {
		fmt.Fprintf(os.Stderr, "Watch it arrive: run with --follow (make run ARGS=--follow), or\n  go run ./cmd/routerctl --nats-url %s tail %s\nCtrl-C stops everything.\n\n", natsURL, demoSubject)
	}
}

// followInbox prints messages as they reach the demo inbox subject. The caller
// closes the returned connection, which ends the subscription.
func followInbox(nc config.NATS) (*nats.Conn, error) {
	conn, err := stream.Connect(nc, "msgrouter-follow")
	if err != nil {
		return nil, err
	}
	_, err = conn.Subscribe(demoSubject, func(m *nats.Msg) {
		fmt.Printf("inbox %s  messageId=%s  from=%s  at=%s\n  %s\n", m.Subject, m.Header.Get("messageId"),
			m.Header.Get("senderId"), m.Header.Get("timestampPublished"), m.Data)
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
