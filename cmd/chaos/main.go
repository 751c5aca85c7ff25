// Command chaos runs msgrouter's fault-injection suite (test/chaos) against the
// built binaries: its own nats-server, its own Postgres database, one ingest and
// three router replicas, fake CAMS and inboxes, on loopback. It prints a table per
// scenario and exits 1 when any accepted message was lost (2 on bad usage or when
// the system could not be set up).
//
//	go build -o bin/ ./cmd/ingest ./cmd/router && go run ./cmd/chaos --short
//
// Wiring only: the suite is test/chaos.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/msgrouter/msgrouter/test/chaos"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var names []string
	for _, s := range chaos.Scenarios() {
		names = append(names, s.Name)
	}
	var clusterNames []string
	for _, s := range chaos.ClusterScenarios() {
		clusterNames = append(clusterNames, s.Name)
	}
	scenarios := fs.String("scenarios", "all", "comma-separated scenarios to run, or all: "+strings.Join(names, ", ")+"; with --cluster: "+strings.Join(clusterNames, ", "))
	messages := fs.Int("messages", 0, "messages per scenario (default 4000, 1000 with --short)")
	short := fs.Bool("short", false, "CI mode: 1000 messages, 5s faults, 4 minute budget")
	keep := fs.Bool("keep", false, "keep the temp dir (logs, JetStream store) and the run's database after the run")
	asJSON := fs.Bool("json", false, "print the report as JSON on stdout")
	binDir := fs.String("bin", "bin", "directory holding the built ingest and router binaries")
	natsServer := fs.String("nats-server", "/usr/sbin/nats-server", "nats-server binary")
	dbURL := fs.String("database-url", os.Getenv("CHAOS_DATABASE_URL"), "Postgres server to create the run's database on (default: libpq defaults; env CHAOS_DATABASE_URL)")
	pgRestart := fs.String("postgres-restart", "", "command restarting the Postgres server (default: pg_ctlcluster --skip-systemctl-redirect <version> main restart; \"none\" skips that scenario)")
	timeout := fs.Duration("timeout", 0, "bound on the whole run (default 9m, 4m with --short)")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	cluster := fs.Bool("cluster", false, "cluster mode: three nats-server processes (--nats-server, default bin/nats-server built from the nats-server/v2 module: make chaos-cluster), STREAM_REPLICAS=3, and the cluster scenarios")
	verbose := fs.Bool("v", false, "describe every scenario after the table (the messages that ended last), not only failed ones")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "chaos: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelError
	}
	if *cluster {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "nats-server" })
		if !explicit {
			*natsServer = "bin/nats-server"
		}
	}
	o := chaos.Options{
		Cluster: *cluster,
		BinDir:  *binDir, NATSServer: *natsServer, DatabaseURL: *dbURL, Messages: *messages,
		Short: *short, Keep: *keep, Timeout: *timeout,
		Scenarios: strings.Split(*scenarios, ","),
		Log:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	switch *pgRestart {
	case "":
	case "none":
		o.PostgresRestart = []string{}
	default:
		o.PostgresRestart = strings.Fields(*pgRestart)
	}
	sel := chaos.Select
	if o.Cluster {
		sel = chaos.SelectCluster
	}
	if _, err := sel(o.Scenarios); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	rep, err := chaos.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: could not run (after %s): %v\n", time.Since(start).Round(time.Second), err)
		return 2
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		rep.Verbose = *verbose
		rep.WriteTable(os.Stdout)
	}
	if !rep.Passed {
		return 1
	}
	return 0
}
