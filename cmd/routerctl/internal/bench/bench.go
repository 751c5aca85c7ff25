// Package bench is the engine of `routerctl bench`: it drives a running msgrouter
// end to end and measures it from the outside, as a producer and an agent would.
//
// A run registers its own agents in CAMS (bench-<runid>-<i>@bench.local) whose
// inboxes it owns: JetStream subjects bench.<runid>.inbox.<i>, captured by a stream
// BENCH_INBOX_<runid> it creates, and/or an HTTP receiver it serves. It then sends
// messages over HTTP ingest or straight to router.messages with JetStream async
// publish, closed loop (--clients N in flight) or open loop (--rate R on a fixed
// timeline), and counts what arrives. Everything it created is removed at the end.
//
// What it measures, per message (keyed by the seq the payload carries, so no
// messageId bookkeeping is needed on the hot path):
//
//   - submit→accept: from the intended send time to the 202 or PubAck;
//   - accept→delivery: from the 202/PubAck (recorded by the sender) to the first
//     arrival at the inbox — the router's own latency;
//   - submit→delivery: from the intended send time to the first arrival — what a
//     producer experiences. In open-loop mode the intended time is the slot on the
//     schedule, not the moment a free sender picked the message up, so a stalled
//     system shows up as latency instead of silently slowing the load down
//     (coordinated omission).
//
// Counters: accepted, delivered (distinct messages), duplicates (a message that
// arrived again), missing (accepted but not delivered when the drain timeout ran
// out), and errors by kind. Latencies and throughput exclude the warmup.
//
// Sender, receivers and clock share the machine, so times are comparable; JetStream
// inbox streams dedupe on Nats-Msg-Id, so NATS inboxes show no duplicates within the
// stream's duplicate window.
package bench

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/msgrouter/msgrouter/internal/apiclient"
)

// Modes and inbox kinds.
const (
	ModeHTTP  = "http"
	ModeNATS  = "nats"
	InboxNATS = "nats"
	InboxHTTP = "http"
	InboxBoth = "both"

	// IngestSubject is where --mode nats publishes (DESIGN §3).
	IngestSubject = "router.messages"
)

// Defaults.
const (
	DefaultClients      = 16
	DefaultAgents       = 4
	DefaultPayloadBytes = 256
	DefaultDuration     = 10 * time.Second
	DefaultDrainTimeout = 30 * time.Second
	DefaultHTTPListen   = "127.0.0.1:0"
)

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("invalid bench configuration")

// Config is one run.
type Config struct {
	// Client reaches ingest (--mode http) and CAMS. Required.
	Client *apiclient.Client
	// NATSURL is the NATS server of the NATS inboxes and of --mode nats. Defaults
	// to nats://127.0.0.1:4222.
	NATSURL string
	// NATSOptions are extra connection options (credentials, TLS).
	NATSOptions []nats.Option
	// Mode is ModeHTTP or ModeNATS. Defaults to http.
	Mode string
	// Inbox is InboxNATS, InboxHTTP or InboxBoth (agents alternate). Defaults to nats.
	Inbox string
	// Clients is the number of requests in flight (closed loop), or the number of
	// senders that serve the schedule (open loop). Defaults to 16.
	Clients int
	// Rate > 0 runs open loop at Rate messages/s; 0 runs closed loop.
	Rate float64
	// Duration of the measured load, after Warmup. Defaults to 10s when Count is 0.
	Duration time.Duration
	// Count > 0 stops after Count messages in all (warmup included) instead.
	Count int
	// Agents is how many agents to register. Defaults to 4 (at least 2 with both).
	Agents int
	// PayloadBytes is the approximate size of each payload. Defaults to 256.
	PayloadBytes int
	// OrderingKeys > 0 spreads the messages over that many ordering keys
	// (senderMetadata.orderingKey "k<seq mod N>", DESIGN §5a), to measure what
	// ordered delivery costs. 0 = unkeyed messages.
	OrderingKeys int
	// Warmup is sent first and left out of latencies and throughput.
	Warmup time.Duration
	// DrainTimeout bounds the wait for deliveries after the load. Defaults to 30s.
	DrainTimeout time.Duration
	// HTTPListen is the HTTP receiver's address. Defaults to 127.0.0.1:0.
	HTTPListen string
	// HTTPAdvertise is the receiver's base URL as the router must reach it.
	// Defaults to http://<listen address>.
	HTTPAdvertise string
	// InboxReplicas is the replica count of the NATS inbox stream (JetStream
	// StreamConfig.Replicas: 1, or up to 5 on a cluster). Defaults to 1.
	InboxReplicas int
	// InboxStorage is the NATS inbox stream's storage, InboxStorageMemory or
	// InboxStorageFile (a cluster run that kills nodes needs file). Defaults to memory.
	InboxStorage string
	// RunID names the run's agents, subjects and stream. Defaults to 8 random hex digits.
	RunID string
	// Progress receives a progress line every ProgressEvery (nil = none).
	Progress      io.Writer
	ProgressEvery time.Duration // Defaults to 1s.
	// NoDeliveryHint is how long after the first accept with nothing delivered the
	// run prints a hint. Defaults to 10s.
	NoDeliveryHint time.Duration

	// Stage, Batch, StartRouter and CPU: see stage.go.
	StageConfig
}

func (c Config) withDefaults() Config {
	c = c.stageDefaults()
	c.NATSURL = cmp.Or(c.NATSURL, nats.DefaultURL)
	c.Mode = cmp.Or(c.Mode, ModeHTTP)
	c.Inbox = cmp.Or(c.Inbox, InboxNATS)
	c.Clients = cmp.Or(c.Clients, DefaultClients)
	if c.Count == 0 {
		c.Duration = cmp.Or(c.Duration, DefaultDuration)
	}
	c.Agents = cmp.Or(c.Agents, DefaultAgents)
	if c.Inbox == InboxBoth {
		c.Agents = max(c.Agents, 2)
	}
	c.PayloadBytes = cmp.Or(c.PayloadBytes, DefaultPayloadBytes)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, DefaultDrainTimeout)
	c.HTTPListen = cmp.Or(c.HTTPListen, DefaultHTTPListen)
	c.InboxReplicas = cmp.Or(c.InboxReplicas, 1)
	c.InboxStorage = cmp.Or(c.InboxStorage, InboxStorageMemory)
	c.ProgressEvery = cmp.Or(c.ProgressEvery, time.Second)
	c.NoDeliveryHint = cmp.Or(c.NoDeliveryHint, 10*time.Second)
	if c.RunID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.RunID = hex.EncodeToString(b[:])
	}
	return c
}

func (c Config) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case c.Client == nil:
		return bad("no API client")
	case c.Mode != ModeHTTP && c.Mode != ModeNATS:
		return bad("mode must be http or nats, not %q", c.Mode)
	case c.Inbox != InboxNATS && c.Inbox != InboxHTTP && c.Inbox != InboxBoth:
		return bad("inbox must be nats, http or both, not %q", c.Inbox)
	case c.Clients < 1:
		return bad("clients must be at least 1")
	case c.Rate < 0:
		return bad("rate must not be negative")
	case c.Count < 0 || c.Duration < 0 || c.Warmup < 0:
		return bad("count, duration and warmup must not be negative")
	case c.Agents < 1 || c.Agents > 10000:
		return bad("agents must be between 1 and 10000")
	case c.OrderingKeys < 0 || c.OrderingKeys > 1_000_000:
		return bad("ordering keys must be between 0 and 1000000")
	case c.PayloadBytes < 0 || c.PayloadBytes > 16<<20:
		return bad("payload bytes must be between 0 and 16 MiB")
	case c.InboxReplicas < 1 || c.InboxReplicas > 5:
		return bad("inbox replicas must be between 1 and 5 (JetStream's limit), not %d", c.InboxReplicas)
	case c.InboxStorage != InboxStorageMemory && c.InboxStorage != InboxStorageFile:
		return bad("inbox storage must be memory or file, not %q", c.InboxStorage)
	}
	if err := c.validateStage(); err != nil {
		return err
	}
	for _, r := range c.RunID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return bad("run id %q may hold only letters, digits, - and _", c.RunID)
		}
	}
	return nil
}

// usesNATS reports whether the run needs a NATS connection.
func (c Config) usesNATS() bool {
	return c.Mode == ModeNATS || c.Stage != StageIngest && c.Inbox != InboxHTTP
}

// Storage of the NATS inbox stream (Config.InboxStorage).
const (
	InboxStorageMemory = "memory"
	InboxStorageFile   = "file"
)

// StreamName is the inbox stream of a run.
func StreamName(runID string) string { return "BENCH_INBOX_" + runID }

// InboxSubject is the NATS inbox of agent i of a run.
func InboxSubject(runID string, i int) string {
	return "bench." + runID + ".inbox." + strconv.Itoa(i)
}

// AgentAddress is the address of agent i of a run.
func AgentAddress(runID string, i int) string {
	return "bench-" + runID + "-" + strconv.Itoa(i) + "@bench.local"
}

type job struct {
	seq      int64
	e        *entry
	intended int64 // 0 = closed loop: the sender stamps it
}

type run struct {
	cfg   Config
	table seqTable

	nc      *nats.Conn
	js      jetstream.JetStream
	httpURL string

	prefixes [][]byte // per agent: the envelope up to the seq digits
	pad      []byte

	sent, accepted, failed            atomic.Int64
	delivered, duplicates, unexpected atomic.Int64
	firstAccept                       atomic.Int64
	sem                               chan struct{} // --mode nats: a slot per unacknowledged publish

	errMu sync.Mutex
	errs  map[string]int64

	loadStart, measureStart, loadEnd time.Time

	stage stageState
}

// Run performs one bench run and returns its result. It returns an error only when
// the run could not be set up (configuration, CAMS, NATS, listener); failures under
// load are counted in the result. When ctx ends, the load stops, the result covers
// what was sent, and cleanup still runs.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, errs: map[string]int64{}}

	// Everything the run creates registers its undoing here; it runs once, in
	// reverse order, on every path out, and even when the caller's context is
	// cancelled (Ctrl-C), so no agent or stream outlives the run.
	var cleanups []func(context.Context) error
	var cleanupErrs []string
	onCleanup := func(f func(context.Context) error) { cleanups = append(cleanups, f) }
	cleanup := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for i := len(cleanups) - 1; i >= 0; i-- {
			if err := cleanups[i](cctx); err != nil {
				cleanupErrs = append(cleanupErrs, err.Error())
			}
		}
		cleanups = nil
	}
	defer cleanup()

	if cfg.usesNATS() {
		if err := r.connectNATS(onCleanup); err != nil {
			return nil, err
		}
	}
	if cfg.Stage != StageIngest {
		if cfg.Inbox != InboxHTTP {
			if err := r.startNATSInbox(ctx, onCleanup); err != nil {
				return nil, err
			}
		}
		if cfg.Inbox != InboxNATS {
			if err := r.startHTTPInbox(onCleanup); err != nil {
				return nil, err
			}
		}
		if err := r.registerAgents(ctx, onCleanup); err != nil {
			return nil, err
		}
	}
	if cfg.Stage == StageDrain {
		if err := r.ensureRouterStream(ctx); err != nil {
			return nil, err
		}
	}
	r.buildTemplates()

	r.loadStart = time.Now()
	r.measureStart = r.loadStart.Add(cfg.Warmup)
	progressDone := make(chan struct{})
	progressStop := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.progress(progressStop)
	}()
	cpuStarted := r.startCPUWindow()

	r.load(ctx)
	interrupted := ctx.Err() != nil
	var stageErr error
	if !interrupted {
		stageErr = r.afterLoad(ctx, cpuStarted, onCleanup)
		interrupted = ctx.Err() != nil
	}
	close(progressStop)
	<-progressDone

	res := r.result()
	res.Interrupted = interrupted
	r.stageResult(res)
	if stageErr != nil {
		cleanup()
		return nil, stageErr
	}
	cleanup()
	res.CleanupErrors = cleanupErrs
	return res, nil
}

func (r *run) connectNATS(onCleanup func(func(context.Context) error)) error {
	opts := append([]nats.Option{nats.Name("routerctl-bench"), nats.MaxReconnects(-1)}, r.cfg.NATSOptions...)
	nc, err := nats.Connect(r.cfg.NATSURL, opts...)
	if err != nil {
		return fmt.Errorf("error connecting to NATS at %s: %w", r.cfg.NATSURL, err)
	}
	onCleanup(func(context.Context) error { nc.Close(); return nil })
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(r.cfg.Clients+1),
		jetstream.WithPublishAsyncTimeout(10*time.Second),
		jetstream.WithPublishAsyncAckHandler(r.onPubAck),
		jetstream.WithPublishAsyncErrHandler(r.onPubErr),
	)
	if err != nil {
		return fmt.Errorf("error opening JetStream: %w", err)
	}
	r.nc, r.js = nc, js
	return nil
}

func (r *run) startNATSInbox(ctx context.Context, onCleanup func(func(context.Context) error)) error {
	name := StreamName(r.cfg.RunID)
	storage := jetstream.MemoryStorage
	if r.cfg.InboxStorage == InboxStorageFile {
		storage = jetstream.FileStorage
	}
	_, err := r.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     name,
		Subjects: []string{"bench." + r.cfg.RunID + ".inbox.>"},
		// Bounded, and in memory by default: the run reads its inbox as it fills, and
		// a bench must not leave disk behind if it dies before cleanup (MaxAge
		// expires the rest). On a cluster, --inbox-replicas 3 --inbox-storage file
		// lets the inbox survive a node's loss (issue 9 item 6).
		Storage:   storage,
		Replicas:  r.cfg.InboxReplicas,
		Retention: jetstream.LimitsPolicy,
		MaxBytes:  256 << 20,
		MaxAge:    time.Hour,
		Discard:   jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("error creating the inbox stream %s: %w", name, err)
	}
	onCleanup(func(ctx context.Context) error {
		if err := r.js.DeleteStream(ctx, name); err != nil {
			return fmt.Errorf("error deleting stream %s: %w", name, err)
		}
		return nil
	})
	cons, err := r.js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("error consuming the inbox stream %s: %w", name, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		r.onDelivery(m.Data(), time.Now().UnixNano())
	})
	if err != nil {
		return fmt.Errorf("error consuming the inbox stream %s: %w", name, err)
	}
	// Registered after the stream's deletion, so it runs before it.
	onCleanup(func(context.Context) error {
		cc.Drain()
		<-cc.Closed()
		return nil
	})
	return nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (r *run) startHTTPInbox(onCleanup func(func(context.Context) error)) error {
	ln, err := net.Listen("tcp", r.cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("error listening on %s for the HTTP inbox: %w", r.cfg.HTTPListen, err)
	}
	base := r.cfg.HTTPAdvertise
	if base == "" {
		addr := ln.Addr().(*net.TCPAddr)
		host := addr.IP.String()
		if addr.IP.IsUnspecified() {
			host = "127.0.0.1"
		}
		base = "http://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
	}
	r.httpURL = base
	// No ServeMux: one route, matched by hand (the mux's pattern match and path
	// value were a per-delivery cost of the load tool's own).
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || !strings.HasPrefix(req.URL.Path, "/inbox/") {
			http.NotFound(w, req)
			return
		}
		r.serveInbox(w, req)
	}), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	onCleanup(func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		<-done
		return err
	})
	return nil
}

// serveInbox is the HTTP receiver: record and answer 204 at once.
func (r *run) serveInbox(w http.ResponseWriter, req *http.Request) {
	now := time.Now().UnixNano()
	bp := bufPool.Get().(*[]byte)
	buf := bytes.NewBuffer((*bp)[:0])
	_, err := buf.ReadFrom(io.LimitReader(req.Body, 64<<20))
	if err == nil {
		r.onDelivery(buf.Bytes(), now)
	}
	*bp = buf.Bytes()[:0]
	bufPool.Put(bp)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *run) onDelivery(data []byte, now int64) {
	seq, ok := parseSeq(data)
	e := (*entry)(nil)
	if ok {
		e = r.table.get(seq)
	}
	if e == nil {
		r.unexpected.Add(1)
		return
	}
	if e.deliveries.Add(1) == 1 {
		e.delivered.Store(now)
		r.delivered.Add(1)
		return
	}
	r.duplicates.Add(1)
}

var seqKey = []byte(`"seq":`)

// parseSeq finds the seq in a payload or envelope this package wrote.
func parseSeq(data []byte) (int64, bool) {
	i := bytes.Index(data, seqKey)
	if i < 0 {
		return 0, false
	}
	var n int64
	digits := 0
	for _, c := range data[i+len(seqKey):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
		digits++
	}
	return n, digits > 0
}

func (r *run) registerAgents(ctx context.Context, onCleanup func(func(context.Context) error)) error {
	var mu sync.Mutex
	var created []string
	onCleanup(func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for _, addr := range created {
			g.Go(func() error {
				if err := r.cfg.Client.DeleteAgent(gctx, addr); err != nil && !apiclient.IsNotFound(err) {
					return fmt.Errorf("error deleting agent %s: %w", addr, err)
				}
				return nil
			})
		}
		return g.Wait()
	})
	// No shared cancellation: every create runs to its answer, so the list of what
	// to delete is exact. A create that got no answer may have happened, so it is
	// deleted too (a 404 then is fine); one answered with an error (a 409 for an
	// address someone else owns) is not ours to delete.
	var g errgroup.Group
	g.SetLimit(8)
	for i := range r.cfg.Agents {
		a := &apiclient.Agent{
			AIAgentAddress: AgentAddress(r.cfg.RunID, i),
			Description:    "routerctl bench run " + r.cfg.RunID,
			OwnerTeam:      "bench",
		}
		if r.agentUsesNATS(i) {
			a.InboxDestinationType, a.InboxName = apiclient.TypeNATSSubject, InboxSubject(r.cfg.RunID, i)
		} else {
			a.InboxDestinationType, a.InboxName = apiclient.TypeHTTPEndpoint, r.httpURL+"/inbox/"+strconv.Itoa(i)
		}
		g.Go(func() error {
			_, err := r.cfg.Client.CreateAgent(ctx, a)
			var apiErr *apiclient.Error
			if err == nil || !errors.As(err, &apiErr) {
				mu.Lock()
				created = append(created, a.AIAgentAddress)
				mu.Unlock()
			}
			if err != nil {
				return fmt.Errorf("error registering agent %s in CAMS: %w", a.AIAgentAddress, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func (r *run) agentUsesNATS(i int) bool {
	switch r.cfg.Inbox {
	case InboxNATS:
		return true
	case InboxHTTP:
		return false
	}
	return i%2 == 0
}

func (r *run) buildTemplates() {
	r.prefixes = make([][]byte, r.cfg.Agents)
	for i := range r.prefixes {
		r.prefixes[i] = []byte(`{"aiAgentAddress":"` + AgentAddress(r.cfg.RunID, i) +
			`","payload":{"benchRun":"` + r.cfg.RunID + `","seq":`)
	}
	// The payload's fixed part is about 70 bytes with 19-digit numbers.
	r.pad = bytes.Repeat([]byte("x"), max(r.cfg.PayloadBytes-70-len(r.cfg.RunID), 0))
}

// appendEnvelope writes the message of seq into b.
func (r *run) appendEnvelope(b []byte, seq, intended int64) []byte {
	b = append(b, r.prefixes[seq%int64(len(r.prefixes))]...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"sentAtUnixNano":`...)
	b = strconv.AppendInt(b, intended, 10)
	b = append(b, `,"pad":"`...)
	b = append(b, r.pad...)
	if n := r.cfg.OrderingKeys; n > 0 {
		b = append(b, `"},"senderMetadata":{"orderingKey":"k`...)
		b = strconv.AppendInt(b, seq%int64(n), 10)
	}
	return append(b, `"}}`...)
}

func (r *run) countError(kind string) {
	r.failed.Add(1)
	r.errMu.Lock()
	r.errs[kind]++
	r.errMu.Unlock()
}

func (r *run) markAccepted(e *entry, now int64) {
	e.accepted.Store(now)
	r.accepted.Add(1)
	r.firstAccept.CompareAndSwap(0, now)
}
