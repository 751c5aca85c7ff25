package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/msgrouter/msgrouter/cmd/routerctl/internal/bench"
	"github.com/msgrouter/msgrouter/internal/apiclient"
)

func cmdBench(a *app, fs *pflag.FlagSet) runFunc {
	var c bench.Config
	fs.StringVar(&c.Mode, "mode", bench.ModeHTTP, "http (POST ingest) or nats (JetStream async publish to router.messages)")
	fs.StringVar(&c.Inbox, "inbox", bench.InboxNATS, "agents' inboxes: nats, http or both (agents alternate)")
	fs.IntVar(&c.Clients, "clients", bench.DefaultClients, "requests in flight (closed loop), or senders serving --rate")
	fs.Float64Var(&c.Rate, "rate", 0, "open loop: target messages/s (0 = closed loop)")
	fs.DurationVar(&c.Duration, "duration", bench.DefaultDuration, "how long to send after the warmup")
	fs.IntVar(&c.Count, "count", 0, "send this many messages in all instead of --duration")
	fs.IntVar(&c.Agents, "agents", bench.DefaultAgents, "agents to register")
	fs.IntVar(&c.OrderingKeys, "ordering-keys", 0, "spread messages over N ordering keys (DESIGN §5a); 0 = unkeyed")
	fs.IntVar(&c.PayloadBytes, "payload-bytes", bench.DefaultPayloadBytes, "approximate payload size")
	fs.DurationVar(&c.Warmup, "warmup", 0, "send this long first, left out of the results")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 0, "how long to wait for deliveries after sending (default 30s; 5m for --stage drain)")
	fs.StringVar(&c.HTTPListen, "http-listen", bench.DefaultHTTPListen, "address of the HTTP inbox receiver")
	fs.StringVar(&c.HTTPAdvertise, "http-advertise", "", "base URL the router uses to reach the receiver (default http://<listen address>)")
	fs.StringVar(&c.RunID, "run-id", "", "name of the run (default random)")
	fs.IntVar(&c.InboxReplicas, "inbox-replicas", 1, "replicas of the NATS inbox stream (3 on a NATS cluster)")
	fs.StringVar(&c.InboxStorage, "inbox-storage", bench.InboxStorageMemory, "storage of the NATS inbox stream: memory or file")
	var sf stageFlags
	sf.register(fs, &c)
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	return func(ctx context.Context, args []string) error {
		c.Mode, c.Inbox = strings.ToLower(c.Mode), strings.ToLower(c.Inbox)
		if err := sf.apply(a, &c); err != nil {
			return err
		}
		if c.Count > 0 {
			c.Duration = 0
		}
		if c.Clients < 1 || c.Agents < 1 || c.Rate < 0 || c.Count < 0 || c.PayloadBytes < 0 || c.OrderingKeys < 0 {
			return usagef("--clients and --agents must be at least 1; --rate, --count, --payload-bytes and --ordering-keys must not be negative")
		}
		if c.Duration <= 0 && c.Count == 0 {
			return usagef("give a positive --duration or --count")
		}
		// One idle connection per sender, so the load tool reuses connections instead
		// of dialling (and burning the CPU it shares with the system under test).
		base := a.api()
		cl := apiclient.New(a.g.timeout, c.Clients)
		cl.RouterURL, cl.IngestURL, cl.CAMSURL, cl.APIKey = base.RouterURL, base.IngestURL, base.CAMSURL, base.APIKey
		defer cl.HTTP.CloseIdleConnections()
		c.Client = cl
		c.NATSURL = a.g.natsURL
		if !*quiet {
			c.Progress = a.stderr
		}
		if c.Progress != nil && !a.g.json {
			fmt.Fprintf(a.stderr, "bench: %s mode, %s inboxes, sending for %s\n", c.Mode, c.Inbox, describeLength(c))
		}
		res, err := bench.Run(ctx, c)
		if errors.Is(err, bench.ErrConfig) {
			return usagef("%v", err)
		}
		if err != nil {
			return err
		}
		if a.g.json {
			err = a.printJSON(res)
		} else {
			err = bench.WriteTable(a.stdout, res)
		}
		if err != nil {
			return err
		}
		if err := sf.writeSummary(c, res); err != nil {
			return err
		}
		if res.Missing > 0 || res.Accepted == 0 {
			return errReported
		}
		return nil
	}
}

func describeLength(c bench.Config) string {
	if c.Count > 0 {
		return fmt.Sprintf("%d messages", c.Count)
	}
	return (c.Warmup + c.Duration).Round(time.Millisecond).String()
}
