package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Scenario is one fault, injected while a fresh batch of messages flows.
type Scenario struct {
	Name  string
	About string
	// Fault injects the fault and returns once it is over (the system restored); d
	// is how long the fault lasts. Nil for no fault.
	Fault func(ctx context.Context, h *harness, d time.Duration) error
	// Duplicates makes the load submit every message several times.
	Duplicates bool
	// Agents, when set, replaces the harness's agents for this scenario's batch
	// (weights summing to 100); it may register them in the fake CAMS.
	Agents func(h *harness) []*agent
	// Direct, when > 0, publishes every Direct-th message straight to the stream
	// with neither a Nats-Msg-Id nor a senderProvidedMessageId: its messageId is
	// derived from the stream sequence (DESIGN §3) and learnt from its inbox.
	Direct int
	// Check, when set, adds the scenario's own verdicts once the batch is judged.
	Check func(ctx context.Context, h *harness, res *Result, msgs []*tracked, faultEnd time.Time)
}

// coreScenarios are the original faults.
func coreScenarios() []Scenario {
	return []Scenario{
		{Name: "baseline", About: "no fault (control)"},
		{Name: "router-kill", About: "kill -9 of router-1, restart; then of router-2, restart", Fault: faultRouterKill},
		{Name: "nats-restart", About: "nats-server kill -9, restarted on the same store", Fault: faultNATSRestart},
		{Name: "postgres-restart", About: "Postgres cluster restart", Fault: faultPostgresRestart},
		{Name: "cams-down", About: "CAMS refuses connections, then answers 503", Fault: faultCAMSDown},
		{Name: "inbox-down", About: "an HTTP inbox refuses connections", Fault: inboxFault(InboxDown)},
		{Name: "inbox-hang", About: "an HTTP inbox never answers (> DELIVERY_TIMEOUT)", Fault: inboxFault(InboxHang)},
		{Name: "inbox-errors", About: "an HTTP inbox answers 500 / 429 Retry-After / 200", Fault: inboxFault(InboxErrors)},
		{Name: "duplicates", About: "each message submitted 2-3 times (HTTP, and JetStream without Nats-Msg-Id)", Duplicates: true},
	}
}

// Scenarios returns every scenario, in the order Run runs them.
func Scenarios() []Scenario {
	return append(coreScenarios(), storeAndMappingScenarios()...)
}

func faultRouterKill(ctx context.Context, h *harness, d time.Duration) error {
	start := time.Now()
	for i, victim := range h.router[:2] {
		sleep(ctx, time.Until(start.Add(time.Duration(2*i)*d/4)))
		victim.Kill()
		h.log.Info("killed", slog.String("process", victim.Name))
		sleep(ctx, time.Until(start.Add(time.Duration(2*i+1)*d/4)))
		if err := victim.Start(); err != nil {
			return err
		}
		if err := victim.WaitReady(ctx, 60*time.Second); err != nil {
			return err
		}
		h.log.Info("restarted", slog.String("process", victim.Name))
	}
	return nil
}

func faultNATSRestart(ctx context.Context, h *harness, d time.Duration) error {
	h.nats.kill()
	h.log.Info("killed nats-server")
	sleep(ctx, d/3)
	if err := h.nats.start(ctx); err != nil {
		return err
	}
	h.log.Info("restarted nats-server")
	return nil
}

func faultPostgresRestart(ctx context.Context, h *harness, _ time.Duration) error {
	if len(h.opts.PostgresRestart) == 0 {
		return errSkipped
	}
	h.log.Info("restarting Postgres", slog.String("command", strings.Join(h.opts.PostgresRestart, " ")))
	if err := runCommand(ctx, 2*time.Minute, h.opts.PostgresRestart); err != nil {
		return err
	}
	if err := h.db.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	h.log.Info("Postgres is back")
	return nil
}

func faultCAMSDown(ctx context.Context, h *harness, d time.Duration) error {
	if err := h.cams.setMode(CAMSRefused); err != nil {
		return err
	}
	sleep(ctx, d/2)
	if err := h.cams.setMode(CAMSUnavailable); err != nil {
		return err
	}
	sleep(ctx, d-d/2)
	return h.cams.setMode(CAMSUp)
}

func inboxFault(mode InboxMode) func(context.Context, *harness, time.Duration) error {
	return func(ctx context.Context, h *harness, d time.Duration) error {
		if err := h.faulty.setMode(mode); err != nil {
			return err
		}
		sleep(ctx, d)
		return h.faulty.setMode(InboxOK)
	}
}

var errSkipped = fmt.Errorf("skipped")

// timing is how long each phase of a scenario lasts.
type timing struct {
	load  time.Duration // the batch is spread over this
	lead  time.Duration // the fault starts this long into the load
	fault time.Duration // and lasts this long
	drain time.Duration // after the load, every message must be terminal within this
}

func timingFor(short bool) timing {
	if short {
		return timing{load: 8 * time.Second, lead: 2 * time.Second, fault: 5 * time.Second, drain: 75 * time.Second}
	}
	// A killed replica's rows come back after their lease (30s) and its unacked
	// stream messages after AckWait (30s): the drain timeout leaves room for both.
	return timing{load: 15 * time.Second, lead: 3 * time.Second, fault: 10 * time.Second, drain: 90 * time.Second}
}

// runScenario runs one scenario on a restored system and checks its batch.
func (h *harness) runScenario(ctx context.Context, sc Scenario, t timing, n int, runID string, deadline time.Time) Result {
	res := Result{Scenario: sc.Name, Fault: sc.About}
	fail := func(format string, args ...any) {
		res.Problems = append(res.Problems, fmt.Sprintf(format, args...))
	}
	if err := h.reset(ctx); err != nil {
		fail("could not restore the system before the scenario: %v", err)
		return res.done()
	}
	exitsBefore := h.unexpectedExits()

	agents := h.agents
	if sc.Agents != nil {
		agents = sc.Agents(h)
	}
	msgs := newBatch(runID, sc.Name, n, agents)
	markDirect(msgs, sc.Direct)
	markOrdered(sc.Name, msgs)
	h.batch = msgs
	ld := newLoader(h.ingestURL(), h.js, 32)
	ld.gate = &h.gate
	loadDone := make(chan loadStats, 1)
	go func() { loadDone <- ld.run(ctx, msgs, t.load, sc.Duplicates) }()
	var faultEnd time.Time
	if sc.Fault != nil {
		sleep(ctx, t.lead)
		h.log.Info("fault", slog.String("scenario", sc.Name), slog.String("fault", sc.About))
		err := sc.Fault(ctx, h, t.fault)
		faultEnd = time.Now()
		switch {
		case err == errSkipped:
			res.Skipped = true
		case err != nil:
			fail("fault injection failed: %v", err)
		}
	}
	stats := <-loadDone
	loadEnd := time.Now()
	if faultEnd.IsZero() || res.Skipped {
		faultEnd = loadEnd // no fault: recovery counts from the end of the load
	}
	res.Submissions, res.Retries, res.NotAccepted = stats.submissions, stats.retries, stats.gaveUp
	for _, p := range stats.problems {
		fail("load: %s", p)
	}
	for i, p := range stats.idMismatch {
		if i == 5 {
			fail("... %d more messageId mismatches", len(stats.idMismatch)-5)
			break
		}
		fail("messageId changed across submissions: %s", p)
	}
	res.IDMismatches = len(stats.idMismatch)

	// Whatever the fault left behind is brought back before judging: the drain
	// measures recovery, not a replica the fault forgot to restart.
	if err := h.reset(ctx); err != nil {
		fail("could not restore the system after the fault: %v", err)
	}
	h.log.Info("draining", slog.String("scenario", sc.Name))
	drainBy := time.Now().Add(t.drain)
	if deadline.Before(drainBy) {
		drainBy = deadline
	}
	chk := newChecker(h.liveRouters)
	chk.drain(ctx, msgs, drainBy)
	if errors.Is(ctx.Err(), context.Canceled) {
		// Interrupted (SIGINT): what is still in flight is not lost, just unfinished.
		return Result{Scenario: sc.Name, Fault: sc.About, Problems: []string{"interrupted"}}.done()
	}
	var err error
	if h.natsNext, err = readInbox(ctx, h.js, h.natsNext, h.natsInbox); err != nil {
		fail("%v", err)
	}
	if sc.Direct > 0 {
		h.resolveDirect(ctx, chk, msgs, drainBy)
	}
	h.judge(&res, msgs, faultEnd)
	judgeOrder(&res, msgs)
	if sc.Check != nil {
		sc.Check(ctx, h, &res, msgs, faultEnd)
	}
	for _, e := range h.unexpectedExits()[len(exitsBefore):] {
		fail("%s", e)
	}
	return res.done()
}

// judge compares each message's end with what its agent expects.
func (h *harness) judge(res *Result, msgs []*tracked, faultEnd time.Time) {
	var recover, latency time.Duration
	var lost, odd []string
	for _, m := range msgs {
		id := m.acceptedID()
		if id == "" {
			if m.direct && !m.acceptedAt.IsZero() {
				// PubAck'd but never seen at its inbox: its id is unknown, so is
				// its status. Lost.
				res.Accepted++
				res.Lost++
				lost = append(lost, fmt.Sprintf("direct message %s (%s) published at %s never arrived", m.spmid, m.agent.address, m.acceptedAt.Format(time.RFC3339Nano)))
			}
			continue
		}
		res.Accepted++
		if terminal(m.status) {
			latency = max(latency, m.terminalAt.Sub(m.acceptedAt))
			if !m.acceptedAt.After(faultEnd) {
				recover = max(recover, m.terminalAt.Sub(faultEnd))
			}
		}
		switch m.status {
		case statusDelivered:
			res.Delivered++
		case statusRejected:
			res.Rejected++
		case statusDeadLettered:
			res.DeadLettered++
		}
		arrived, body := 0, []byte(nil)
		if m.agent.arrivals != nil {
			arrived, body = m.agent.arrivals.get(id)
			res.Duplicates += max(arrived-1, 0)
		}
		detail := func() string {
			return fmt.Sprintf("%s (%s, %s): status=%q reason=%q attempts=%d lastError=%q arrivals=%d",
				id, m.spmid, m.agent.address, m.status, m.reason, m.attempts, m.lastError, arrived)
		}
		switch {
		case !terminal(m.status):
			res.Lost++
			if m.status == statusPending {
				res.Stuck++
			}
			lost = append(lost, "not terminal: "+detail())
		case m.status != m.agent.expect:
			res.Unexpected++
			odd = append(odd, "unexpected status: "+detail())
		case m.status == statusDelivered && m.agent.arrivals != nil && arrived == 0:
			res.Lost++
			lost = append(lost, "DELIVERED but never arrived: "+detail())
		case arrived > 0 && !bytes.Equal(compact(body), m.payload):
			res.Corrupted++
			odd = append(odd, fmt.Sprintf("payload changed: %s: got %s, want %s", detail(), body, m.payload))
		}
	}
	for _, list := range [][]string{lost, odd} {
		for i, p := range list {
			if i == 10 {
				res.Problems = append(res.Problems, fmt.Sprintf("... and %d more like it", len(list)-10))
				break
			}
			res.Problems = append(res.Problems, p)
		}
	}
	res.RecoverSeconds, res.MaxLatencySeconds = recover.Seconds(), latency.Seconds()
	if res.Lost > 0 {
		res.RecoverSeconds = -1
	}
	res.Slowest = slowest(msgs, faultEnd, 3)
}

// slowest describes the n messages that reached their end last: where a long
// recovery comes from (a lease, AckWait, a Nak delay) shows in their timings.
func slowest(msgs []*tracked, faultEnd time.Time, n int) []string {
	var done []*tracked
	for _, m := range msgs {
		if m.acceptedID() != "" && !m.terminalAt.IsZero() {
			done = append(done, m)
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i].terminalAt.After(done[j].terminalAt) })
	var out []string
	for _, m := range done[:min(n, len(done))] {
		out = append(out, fmt.Sprintf("%s (%s) %s attempts=%d: accepted %+.1fs, taken over %+.1fs, terminal %+.1fs (relative to the fault's end)",
			m.acceptedID(), m.agent.address, m.status, m.attempts, m.acceptedAt.Sub(faultEnd).Seconds(),
			m.receivedAt.Sub(faultEnd).Seconds(), m.terminalAt.Sub(faultEnd).Seconds()))
	}
	return out
}

func (h *harness) unexpectedExits() []string {
	var out []string
	for _, p := range h.procs() {
		out = append(out, p.Unexpected()...)
	}
	return out
}

// Options configure Run.
type Options struct {
	// BinDir holds the built ingest and router binaries. Defaults to "bin".
	BinDir string
	// NATSServer is the nats-server binary. Defaults to /usr/sbin/nats-server.
	NATSServer string
	// DatabaseURL is where the run's database is created and dropped. Defaults to
	// the libpq defaults.
	DatabaseURL string
	// PostgresRestart restarts the Postgres server for the postgres-restart
	// scenario. Defaults to DefaultPostgresRestart(); empty skips the scenario.
	PostgresRestart []string
	// Scenarios to run, by name. Defaults to all.
	Scenarios []string
	// Messages per scenario. Defaults to 4000, 1000 when Short.
	Messages int
	// Short is the CI mode: smaller batches, 5s faults.
	Short bool
	// Keep keeps the temp dir (logs, JetStream store) after the run.
	Keep bool
	// Timeout bounds the whole run. Defaults to 9m, 4m when Short.
	Timeout time.Duration
	// Log receives progress. Defaults to discarding it.
	Log *slog.Logger
	// Cluster runs a 3-node NATS cluster with R3 streams and the cluster
	// scenarios (ClusterScenarios) instead of the single-node ones.
	Cluster bool
}

func (o Options) withDefaults() Options {
	if o.BinDir == "" {
		o.BinDir = "bin"
	}
	if o.NATSServer == "" {
		o.NATSServer = "/usr/sbin/nats-server"
	}
	if o.PostgresRestart == nil {
		o.PostgresRestart = DefaultPostgresRestart()
	}
	if o.Messages <= 0 {
		o.Messages = 4000
		if o.Short {
			o.Messages = 1000
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = 9 * time.Minute
		if o.Short {
			o.Timeout = 4 * time.Minute
		}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Select returns the scenarios named (all for nil, or for "all").
func Select(names []string) ([]Scenario, error) {
	return selectFrom(Scenarios(), "scenario", names)
}

// selectFrom returns the scenarios of all named, in the order named (all of them
// for nil, or for "all"); kind names them in the error for an unknown name.
func selectFrom(all []Scenario, kind string, names []string) ([]Scenario, error) {
	if len(names) == 0 || len(names) == 1 && names[0] == "all" {
		return all, nil
	}
	byName := map[string]Scenario{}
	var known []string
	for _, s := range all {
		byName[s.Name] = s
		known = append(known, s.Name)
	}
	var out []Scenario
	for _, n := range names {
		s, ok := byName[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("unknown %s %q (known: %s)", kind, n, strings.Join(known, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

// Run sets the system up, runs the scenarios one after another, and tears it all
// down. The error is for a run that could not happen (a binary missing, Postgres
// unreachable); a scenario that failed is in the Report.
func Run(ctx context.Context, o Options) (*Report, error) {
	o = o.withDefaults()
	scenarios, err := selectFor(o)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	deadline := started.Add(o.Timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	t := timingFor(o.Short)
	rep := &Report{Short: o.Short, Messages: o.Messages}

	h, err := setup(ctx, o)
	if err != nil {
		return nil, err
	}
	rep.Dir = h.dir
	rep.Logs = h.logPaths()
	o.Log.Info("system up", slog.String("dir", h.dir), slog.String("database", h.db.name), slog.String("nats", h.nats.url))

	runID := uuid.NewString()[:8]
	for _, sc := range scenarios {
		if ctx.Err() != nil {
			why := "not run: the run's time budget is spent"
			if errors.Is(ctx.Err(), context.Canceled) {
				why = "not run: interrupted"
			}
			rep.Results = append(rep.Results, Result{Scenario: sc.Name, Fault: sc.About, Problems: []string{why}}.done())
			continue
		}
		o.Log.Info("scenario", slog.String("name", sc.Name), slog.Int("messages", o.Messages))
		// Leave time to tear down after the last drain.
		res := h.runScenario(ctx, sc, t, o.Messages, runID, deadline.Add(-30*time.Second))
		o.Log.Info("scenario done", slog.String("name", sc.Name), slog.Bool("passed", res.Passed),
			slog.Int("accepted", res.Accepted), slog.Int("lost", res.Lost), slog.Float64("recover_s", res.RecoverSeconds))
		rep.Results = append(rep.Results, res)
	}
	rep.Passed = true
	for _, r := range rep.Results {
		rep.Passed = rep.Passed && r.Passed
	}
	rep.Teardown = h.close(context.WithoutCancel(ctx), o.Keep, !rep.Passed)
	rep.Passed = rep.Passed && len(rep.Teardown) == 0
	rep.Kept = o.Keep || !rep.Passed
	rep.Elapsed = time.Since(started).Round(time.Second).String()
	return rep, nil
}
