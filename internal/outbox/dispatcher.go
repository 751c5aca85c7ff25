package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/time/rate"

	"github.com/msgrouter/msgrouter/internal/backoff"
	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/delivery"
	"github.com/msgrouter/msgrouter/internal/routing"
)

// Breakers guards destinations (internal/breaker.Set).
type Breakers interface {
	Allow(key string) (func(breaker.Outcome), error)
	OpenFor(key string) time.Duration
	State(key string) gobreaker.State
}

// LookupFunc looks an agent up in CAMS.
type LookupFunc func(ctx context.Context, address string) (*mapping.Mapping, error)

// Config configures a Dispatcher.
type Config struct {
	Store     *Store
	Deliverer delivery.Deliverer
	Breakers  Breakers
	// LookupFresh routes replayed messages afresh (bypassing any cache).
	LookupFresh LookupFunc
	// Lookup looks an agent up through the CAMS cache (at most CAMS_CACHE_TTL
	// old) before every retry, so retries follow the agent's current mapping
	// (DESIGN §5). nil = retries go to the inbox they were routed to.
	Lookup LookupFunc
	// HoldMaxAge is HOLD_MAX_AGE (DESIGN §5a). Defaults to 24h.
	HoldMaxAge time.Duration
	// HoldCheck is how often a held agent is looked up in CAMS (once per agent).
	// Defaults to 2s.
	HoldCheck time.Duration
	// ExpiryCheck is how often expired waiting messages are dead-lettered.
	// Defaults to 1s.
	ExpiryCheck time.Duration
	// Secrets returns an agent's own signing secrets, for rows whose agent had
	// some when it was routed and that were not just taken over in-process (an
	// error makes the row wait: signing with the wrong secret is not an option).
	Secrets     func(ctx context.Context, address string) ([]string, error)
	Backoff     backoff.Policy
	MaxAttempts int           // DELIVERY_MAX_ATTEMPTS. Defaults to 10.
	Timeout     time.Duration // DELIVERY_TIMEOUT per attempt. Defaults to 10s.
	// Concurrency is the number of deliveries in flight per destination. Defaults to 32.
	Concurrency int
	// Rate caps deliveries per second per destination. 0 = unlimited.
	Rate float64
	// BreakerWait is how long a message waits when its destination's breaker is
	// half-open with a probe in flight, or when CAMS is unavailable for a replayed
	// row. Defaults to 1s. Behind an open breaker a message waits out the rest of
	// the open period.
	BreakerWait time.Duration
	// Lease is how long a claim holds a row. Defaults to 3×Timeout, at least 10s.
	Lease time.Duration
	// PollInterval is how often due rows are swept. Defaults to 250ms.
	PollInterval time.Duration
	// ClaimBatch is how many rows one claim takes. Defaults to 256.
	ClaimBatch int
	// QueueLimit bounds jobs queued in memory across destinations. Defaults to 8192.
	QueueLimit int
	// OnRejected is told about messages that routing afresh rejected.
	OnRejected     func(reason string)
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
	TracerProvider trace.TracerProvider
	// AckFloor returns the router consumer's ack floor (JetStream
	// ConsumerInfo.AckFloor.Stream): every stream message at or below it has been
	// taken over. Keyed messages wait for it to pass them before their first claim,
	// so an earlier message of their key still on its way (another batch, another
	// replica, a redelivery) goes first (DESIGN §5a, ordergate.go). nil = keyed
	// messages wait a fixed 150 ms instead (tests of this package).
	AckFloor func(ctx context.Context) (uint64, error)
	// StreamKey returns the address and ordering key of the stream message at seq
	// ("" for none: unkeyed, unparseable or gone). With it, a keyed message whose
	// gate is held by the ack floor for longer than gateStuck passes when no stream
	// message between the floor and it belongs to its key: a message of another
	// agent that CAMS cannot route holds back only its own key (DESIGN §4, §5a).
	// nil = keyed messages wait for the floor itself.
	StreamKey func(ctx context.Context, seq uint64) (address, key string, err error)
	// InboxAuth returns an agent's inbox credentials for each HTTP attempt, looked
	// up at delivery time (never stored in the outbox; DESIGN §4); nil = none. An
	// error makes the row wait, like Secrets. Nil func = no credentials.
	InboxAuth func(ctx context.Context, address string) (*mapping.InboxAuth, error)
}

func (c *Config) withDefaults() {
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.BreakerWait <= 0 {
		c.BreakerWait = time.Second
	}
	if c.Lease <= 0 {
		// Long enough to queue behind a few slow attempts and still deliver; short
		// enough that rows held by a replica that died come back soon.
		c.Lease = max(10*time.Second, 3*c.Timeout)
	}
	if c.HoldMaxAge <= 0 {
		c.HoldMaxAge = 24 * time.Hour
	}
	if c.HoldCheck <= 0 {
		c.HoldCheck = 2 * time.Second
	}
	if c.ExpiryCheck <= 0 {
		c.ExpiryCheck = time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.ClaimBatch <= 0 {
		c.ClaimBatch = 256
	}
	if c.QueueLimit <= 0 {
		c.QueueLimit = 8192
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.TracerProvider == nil {
		c.TracerProvider = noop.NewTracerProvider()
	}
	if c.OnRejected == nil {
		c.OnRejected = func(string) {}
	}
}

// Job is one claimed row on its way to its inbox.
type Job struct {
	Claimed
	SigningSecrets []string
	haveSecrets    bool
	auth           *delivery.Auth // looked up for each attempt, never stored
	routeChecked   bool           // looked up in CAMS for this claim already (agentaware.go)
	deadline       time.Time      // local: after it, the lease may have passed to another claim
}

// Dispatcher delivers outbox rows. Rows reach it two ways: handed over in-process
// right after the takeover commit (the fast path), or claimed by its sweep (retries,
// expired leases, replays, other replicas' leftovers). Each destination gets its own
// lane with bounded concurrency, so a slow or dead inbox only ever holds its own
// lane (no head-of-line blocking). Results are written back in batches.
type Dispatcher struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	am      *agentMetrics
	holds   holds
	gate    orderGate
	tracer  trace.Tracer
	results chan done
	poke    chan struct{}

	mu    sync.Mutex
	lanes map[string]*lane
	// resultsMu guards results against sends after Stop closed it (a handoff
	// from a consumer that outlived its stop deadline).
	resultsMu     sync.RWMutex
	resultsClosed bool
	stopping      atomic.Bool
	queued        atomic.Int64
	unwritten     atomic.Int64 // results given up on when Stop's context ended, reported by Stop

	ctx       context.Context // cancelled when Stop gives up waiting
	cancel    context.CancelFunc
	sweepStop context.CancelFunc
	sweepCtx  context.Context // ends when Stop begins
	workers   sync.WaitGroup  // lanes and sweep
	completer sync.WaitGroup
	startOnce sync.Once
	stopOnce  sync.Once

	// writeCtx bounds result writes: cancelled when Stop's context ends, so a
	// write retrying against an unreachable Postgres gives up (DESIGN §8.4). A
	// result not written is safe: the row comes back after its lease.
	writeCtx    context.Context
	writeCancel context.CancelFunc
}

type lane struct {
	key      string
	jobs     chan *Job
	limiter  *rate.Limiter
	lastUsed atomic.Int64
	route    bool // the lane that looks replayed rows up in CAMS
}

type done struct {
	Result
	job *Job
}

// completers is how many result writers run at once. A keyed message's successor
// is claimed when its result is written (ordergate.go), so a busy key moves at the
// pace of these writes: more writers, shorter batches, less time per key.
var completers = 4

// routeLane is the key of the lane that routes replayed rows afresh.
const routeLane = "\x00route"

// New returns a Dispatcher; Start runs it.
func New(cfg Config) *Dispatcher {
	cfg.withDefaults()
	d := &Dispatcher{
		cfg:     cfg,
		log:     cfg.Logger,
		m:       newMetrics(cfg.Registerer),
		tracer:  cfg.TracerProvider.Tracer("github.com/msgrouter/msgrouter/internal/outbox"),
		results: make(chan done, 4096),
		poke:    make(chan struct{}, 1),
		lanes:   map[string]*lane{},
		holds:   holds{agents: map[string]*heldAgent{}},
		gate:    orderGate{wake: make(chan struct{}, 1)},
	}
	d.am = newAgentMetrics(cfg.Registerer, d)
	return d
}

// Lease is how long claims made for this dispatcher last.
func (d *Dispatcher) Lease() time.Duration { return d.cfg.Lease }

// Start launches the sweep, the completers and the lane reaper.
func (d *Dispatcher) Start(ctx context.Context) error {
	d.startOnce.Do(func() {
		d.ctx, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
		d.writeCtx, d.writeCancel = context.WithCancel(context.WithoutCancel(ctx))
		var sweepCtx context.Context
		sweepCtx, d.sweepStop = context.WithCancel(d.ctx)
		d.sweepCtx = sweepCtx
		d.workers.Add(4)
		go d.runGate(sweepCtx)
		go d.sweep(sweepCtx)
		go d.reapLanes(sweepCtx)
		go d.watchAgents(sweepCtx)
		for range completers {
			d.completer.Add(1)
			go d.complete()
		}
	})
	return nil
}

// Stop stops claiming, hands queued rows back, lets in-flight deliveries finish
// until ctx ends (then cancels them: a cancelled delivery is handed back, not
// counted as an attempt), writes the last results and returns. Idempotent.
//
// Stop returns by the time ctx ends plus the time to abandon a database call
// (DESIGN §8.4: shutdown is bounded, also while Postgres is down): when ctx ends,
// deliveries are cancelled and result writes give up. It then returns an error
// wrapping ctx.Err() saying some results were not written; those rows are claimed
// again after their lease (at-least-once, never lost). Every goroutine the
// Dispatcher started has ended when Stop returns.
func (d *Dispatcher) Stop(ctx context.Context) error {
	var err error
	d.stopOnce.Do(func() {
		if d.cancel == nil {
			return
		}
		d.stopping.Store(true)
		d.sweepStop()
		d.mu.Lock()
		for k, l := range d.lanes {
			close(l.jobs)
			delete(d.lanes, k)
		}
		d.mu.Unlock()
		// Once ctx ends, in-flight deliveries and result writes are cut short; both
		// then finish at once (a cancelled delivery is a Release, a cancelled write
		// is given up), so the waits below end promptly.
		giveUp := context.AfterFunc(ctx, func() {
			d.cancel()
			d.writeCancel()
		})
		defer giveUp()
		d.workers.Wait()
		d.resultsMu.Lock()
		d.resultsClosed = true
		close(d.results)
		d.resultsMu.Unlock()
		d.completer.Wait()
		d.cancel()
		d.writeCancel()
		if n := d.unwritten.Load(); n > 0 {
			err = fmt.Errorf("dispatcher stopped with %d delivery results not written (their rows come back after the lease): %w", n, context.Cause(ctx))
		}
	})
	return err
}

// Poke makes the sweep look for due rows now (after a replay).
func (d *Dispatcher) Poke() {
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

// NewJob wraps a row held by a claim made at claimedAt.
func (d *Dispatcher) NewJob(c Claimed, claimedAt time.Time, secrets []string, haveSecrets bool) *Job {
	// The lease runs on the database clock from the claim's commit; a claim made
	// "now" by our clock minus a safety margin is a conservative local bound.
	return &Job{Claimed: c, SigningSecrets: secrets, haveSecrets: haveSecrets, deadline: claimedAt.Add(d.cfg.Lease * 3 / 4)}
}

// Handoff queues jobs taken over by this process. It never blocks: a job that finds
// its lane full waits in the outbox instead. Keyed jobs (not leased by the
// takeover) go to the order gate first: claimed once every earlier stream message
// has been taken over, if they lead their key (ordergate.go, DESIGN §5a).
func (d *Dispatcher) Handoff(jobs ...*Job) {
	var keyed []*Job
	for _, j := range jobs {
		if j.OrderingKey != "" {
			keyed = append(keyed, j)
			continue
		}
		d.submit(j)
	}
	if len(keyed) > 0 {
		if d.stopping.Load() {
			return // not leased: the rows come due after the lease
		}
		d.gate.add(keyed)
	}
}

func (d *Dispatcher) submit(j *Job) {
	if d.stopping.Load() {
		d.finish(j, Result{Kind: Release})
		return
	}
	key := routeLane
	if !j.Route {
		key = breaker.Key(j.DestType, j.DestName)
	}
	d.mu.Lock()
	l := d.lanes[key]
	if l == nil && !d.stopping.Load() {
		l = d.newLane(key)
	}
	sent := false
	if l != nil {
		select {
		case l.jobs <- j:
			sent = true
			d.queued.Add(1)
		default:
		}
	}
	d.mu.Unlock()
	if !sent {
		d.m.waits.WithLabelValues("lane_full").Inc()
		d.finish(j, Result{Kind: Wait, Delay: time.Second})
	}
}

// newLane starts a lane's workers. Called with d.mu held.
func (d *Dispatcher) newLane(key string) *lane {
	// The queue holds a few batches' worth, so a burst handed over after a
	// takeover waits here rather than going back to the outbox.
	l := &lane{key: key, jobs: make(chan *Job, max(1024, 16*d.cfg.Concurrency)), route: key == routeLane}
	if d.cfg.Rate > 0 && !l.route {
		l.limiter = rate.NewLimiter(rate.Limit(d.cfg.Rate), max(1, int(d.cfg.Rate)))
	}
	l.lastUsed.Store(time.Now().UnixNano())
	d.lanes[key] = l
	workers := d.cfg.Concurrency
	if l.route {
		workers = 8
	}
	d.workers.Add(workers)
	for range workers {
		go d.runLane(l)
	}
	return l
}

func (d *Dispatcher) runLane(l *lane) {
	defer d.workers.Done()
	for j := range l.jobs {
		d.queued.Add(-1)
		l.lastUsed.Store(time.Now().UnixNano())
		d.process(l, j)
	}
}

// reapLanes closes lanes idle for a minute, so the lane map does not grow with
// every destination ever seen.
func (d *Dispatcher) reapLanes(ctx context.Context) {
	defer d.workers.Done()
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		idle := time.Now().Add(-time.Minute).UnixNano()
		d.mu.Lock()
		for k, l := range d.lanes {
			if len(l.jobs) == 0 && l.lastUsed.Load() < idle {
				close(l.jobs)
				delete(d.lanes, k)
			}
		}
		d.mu.Unlock()
	}
}

func (d *Dispatcher) sweep(ctx context.Context) {
	defer d.workers.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.poke:
		}
		n := d.sweepOnce(ctx)
		next := d.cfg.PollInterval
		if n == d.cfg.ClaimBatch {
			next = 0 // more may be due
		}
		timer.Reset(next)
	}
}

func (d *Dispatcher) sweepOnce(ctx context.Context) int {
	room := int64(d.cfg.QueueLimit) - d.queued.Load()
	if room <= 0 {
		return 0 // lanes are busy: leave rows in the outbox, where they wait for free
	}
	claimedAt := time.Now()
	rows, looked, parked, err := d.cfg.Store.claim(ctx, int(min(room, int64(d.cfg.ClaimBatch))), d.cfg.Lease)
	d.recheckParked(parked)
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "outbox sweep failed", slog.Any("error", err))
		}
		if len(rows) == 0 {
			return 0
		}
	}
	d.m.claimed.Add(float64(len(rows)))
	for _, c := range rows {
		if c.OrderingKey != "" && c.Attempts == 0 {
			d.am.orderingWait.Observe(claimedAt.Sub(c.AcceptedAt).Seconds())
		}
		d.submit(d.NewJob(c, claimedAt, nil, false))
	}
	return looked // rows parked behind their key's head count too: more may be due
}

func (d *Dispatcher) process(l *lane, j *Job) {
	if d.stopping.Load() {
		d.finish(j, Result{Kind: Release})
		return
	}
	if time.Now().After(j.deadline) {
		// The lease may already belong to another claim: delivering now could run
		// concurrently with it. Drop the job; the row is claimed again.
		d.m.leaseExpired.Inc()
		return
	}
	if d.agentAware(l, j) {
		return
	}
	if l.route {
		d.route(j)
		return
	}
	if err := mapping.ValidateInbox(j.DestType, j.DestName); err != nil {
		// A route stored before it was refused (an older router, DESIGN §4): never
		// publish to a system subject or the router's own.
		d.finish(j, Result{Kind: Rejected, Reason: routing.ReasonConfigError, Error: err.Error()})
		return
	}
	if j.DestType == mapping.TypeHTTPEndpoint && j.AgentSecrets && !j.haveSecrets && d.cfg.Secrets != nil {
		secrets, err := d.cfg.Secrets(d.ctx, j.Address)
		if err != nil {
			d.m.waits.WithLabelValues("cams_unavailable").Inc()
			d.finish(j, Result{Kind: Wait, Delay: d.cfg.BreakerWait})
			return
		}
		j.SigningSecrets, j.haveSecrets = secrets, true
	}
	if j.DestType == mapping.TypeHTTPEndpoint && d.cfg.InboxAuth != nil {
		a, err := d.cfg.InboxAuth(d.ctx, j.Address)
		if err != nil {
			d.m.waits.WithLabelValues("cams_unavailable").Inc()
			d.finish(j, Result{Kind: Wait, Delay: d.cfg.BreakerWait})
			return
		}
		j.auth = nil
		if a != nil {
			h, v, err := a.Credential()
			j.auth = &delivery.Auth{Header: h, Value: v, Err: err}
		}
	}
	key := breaker.Key(j.DestType, j.DestName)
	report, err := d.cfg.Breakers.Allow(key)
	if err != nil {
		// Waiting behind an open breaker is not an attempt.
		d.m.waits.WithLabelValues("breaker_open").Inc()
		wait := d.cfg.BreakerWait
		if d.cfg.Breakers.State(key) == gobreaker.StateOpen {
			wait = max(d.cfg.Breakers.OpenFor(key), 50*time.Millisecond)
		}
		d.finish(j, Result{Kind: Wait, Delay: wait})
		return
	}
	if l.limiter != nil {
		if err := l.limiter.Wait(d.ctx); err != nil {
			report(breaker.Ignore)
			d.finish(j, Result{Kind: Release})
			return
		}
	}
	d.deliver(j, report)
}

var propagator = propagation.TraceContext{}

func (d *Dispatcher) deliver(j *Job, report func(breaker.Outcome)) {
	ctx := d.ctx
	if j.Traceparent != "" {
		ctx = propagator.Extract(ctx, propagation.MapCarrier{"traceparent": j.Traceparent})
	}
	ctx, span := d.tracer.Start(ctx, "msgrouter.deliver", trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	tp := ""
	if sc := span.SpanContext(); sc.IsValid() {
		carrier := propagation.MapCarrier{}
		propagator.Inject(ctx, carrier)
		tp = carrier["traceparent"]
	}
	del := &delivery.Delivery{
		MessageID:       j.ID.String(),
		AIAgentAddress:  j.Address,
		DestType:        j.DestType,
		DestName:        j.DestName,
		Payload:         j.Payload,
		AcceptedAt:      j.AcceptedAt,
		SenderID:        j.SenderID,
		CorrelationID:   j.CorrelationID,
		SenderMessageID: j.SenderMessageID,
		Traceparent:     tp,
		SigningSecrets:  j.SigningSecrets,
		Auth:            j.auth,
	}
	attemptCtx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	start := time.Now()
	err := d.cfg.Deliverer.Deliver(attemptCtx, del)
	dur := time.Since(start)
	cancel()
	d.m.duration.WithLabelValues(j.DestType).Observe(dur.Seconds())
	res := Result{At: start, Duration: dur}
	switch {
	case err == nil:
		report(breaker.Success)
		res.Kind = Delivered
		d.m.attempts.WithLabelValues(j.DestType, "delivered").Inc()
	case d.ctx.Err() != nil:
		// Shutting down: not the destination's fault, not an attempt.
		report(breaker.Ignore)
		d.finish(j, Result{Kind: Release})
		return
	default:
		e := delivery.Classify(err)
		if e.CountsForBreaker {
			report(breaker.Failure)
		} else {
			report(breaker.Ignore)
		}
		res.Error = err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			res.Error = "delivery timed out after " + d.cfg.Timeout.String() + ": " + err.Error()
		}
		if e.Permanent && e.Reason != "" {
			res.Kind, res.Reason = Dead, e.Reason
			d.m.attempts.WithLabelValues(j.DestType, "permanent_failure").Inc()
		} else {
			res.Kind = Failed
			if e.RetryAfter > 0 {
				res.Delay = d.cfg.Backoff.Clamp(e.RetryAfter)
			} else {
				res.Delay = d.cfg.Backoff.Delay(j.Attempts+1, rand.Float64)
			}
			d.m.attempts.WithLabelValues(j.DestType, "failed").Inc()
		}
		d.log.LogAttrs(ctx, slog.LevelInfo, "delivery attempt failed",
			slog.String("message_id", del.MessageID), slog.String("destination_type", j.DestType),
			slog.Int("attempt", j.Attempts+1), slog.String("error", res.Error))
	}
	d.finish(j, res)
}

// route looks a replayed message up afresh and sends it on to its destination's lane.
func (d *Dispatcher) route(j *Job) {
	ctx := d.ctx
	if j.Payload == nil {
		d.finish(j, Result{Kind: Rejected, Reason: routing.ReasonInvalidMessage, Error: "the message did not parse when it was received"})
		return
	}
	m, err := d.cfg.LookupFresh(ctx, j.Address)
	hold := isHold(m, err)
	dec, err := routing.Decide(m, err)
	if err != nil {
		d.m.waits.WithLabelValues("cams_unavailable").Inc()
		d.finish(j, Result{Kind: Wait, Delay: d.cfg.BreakerWait})
		return
	}
	if hold {
		d.hold(j, time.Now())
		return
	}
	if dec.Rejected() {
		d.finish(j, Result{Kind: Rejected, Reason: dec.Reason, Error: dec.Detail})
		return
	}
	if err := d.cfg.Store.SetRoute(ctx, j.ID, j.Token, dec.DestType, dec.DestName, len(dec.SigningSecrets) > 0); err != nil {
		if !errors.Is(err, ErrLeaseLost) {
			d.log.WarnContext(ctx, "error storing a replayed message's route", slog.String("message_id", j.ID.String()), slog.Any("error", err))
			d.finish(j, Result{Kind: Wait, Delay: d.cfg.BreakerWait})
		}
		return
	}
	j.Route, j.DestType, j.DestName, j.routeChecked = false, dec.DestType, dec.DestName, true
	j.SigningSecrets, j.haveSecrets = dec.SigningSecrets, true
	d.submit(j)
}

func (d *Dispatcher) finish(j *Job, r Result) {
	r.ID, r.Token = j.ID, j.Token
	r.Address, r.OrderingKey = j.Address, j.OrderingKey
	d.resultsMu.RLock()
	defer d.resultsMu.RUnlock()
	if d.resultsClosed {
		return // stopped: the row's lease expires and it is claimed again
	}
	d.results <- done{Result: r, job: j}
}

// complete writes results in batches: whatever arrived while the previous batch
// was being written goes in the next one.
func (d *Dispatcher) complete() {
	defer d.completer.Done()
	batch := make([]done, 0, 512)
	for r := range d.results {
		batch = append(batch[:0], r)
	more:
		for len(batch) < cap(batch) {
			select {
			case r, ok := <-d.results:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		d.write(batch)
	}
}

func (d *Dispatcher) write(batch []done) {
	results := make([]Result, len(batch))
	for i, b := range batch {
		results[i] = b.Result
	}
	// Retry while the rows' leases still hold (a Postgres restart, a failover):
	// once they lapse the rows are claimed and delivered again, a duplicate the
	// retries are here to avoid.
	deadline := batch[0].job.deadline
	for _, b := range batch[1:] {
		if b.job.deadline.Before(deadline) {
			deadline = b.job.deadline
		}
	}
	// Complete splits a batch that fails for a data reason itself (one bad row
	// never fails the others), so what comes back here is transient. It may have
	// committed part of the batch before failing; applying a result twice is
	// harmless, and the statuses of each try are kept.
	final := make(map[uuid.UUID]string, len(results))
	var err error
	for try := 0; ; try++ {
		// Results are written even while stopping (a context of our own), until
		// Stop's context ends (writeCtx).
		ctx, cancel := context.WithTimeout(d.writeCtx, 10*time.Second)
		var got map[uuid.UUID]string
		var next []Claimed
		claimedAt := time.Now()
		// The next row of each key a result let go of is claimed in the same
		// transaction and goes straight to its lane (DESIGN §5a, ordergate.go).
		got, next, err = d.cfg.Store.CompleteNext(ctx, results, d.cfg.MaxAttempts, d.cfg.Lease)
		cancel()
		maps.Copy(final, got)
		for _, c := range next {
			if c.Attempts == 0 {
				d.am.orderingWait.Observe(claimedAt.Sub(c.AcceptedAt).Seconds())
			}
			d.m.claimed.Inc()
			d.submit(d.NewJob(c, claimedAt, nil, false))
		}
		if err == nil {
			break
		}
		wait := min(100*time.Millisecond<<min(try, 4), 2*time.Second)
		if time.Now().Add(wait).After(deadline) || d.writeCtx.Err() != nil {
			d.log.Warn("giving up recording delivery results: their rows are claimed again once the lease expires",
				slog.Int("results", len(results)), slog.Int("tries", try+1), slog.Any("error", err))
			break
		}
		d.log.Warn("error recording delivery results, retrying", slog.Int("results", len(results)), slog.Int("try", try+1), slog.Any("error", err))
		select {
		case <-time.After(wait):
		case <-d.writeCtx.Done():
		}
	}
	if err != nil && d.writeCtx.Err() != nil {
		d.unwritten.Add(int64(len(results)))
	}
	now := time.Now()
	for _, b := range batch {
		status, changed := final[b.ID]
		switch {
		case b.Kind == Delivered && changed:
			d.m.deliveries.WithLabelValues(b.job.DestType, "delivered").Inc()
			d.m.endToEnd.WithLabelValues(b.job.DestType).Observe(now.Sub(b.job.AcceptedAt).Seconds())
			d.log.Debug("delivered", slog.String("message_id", b.ID.String()))
		case status == StatusDeadLettered:
			d.m.deliveries.WithLabelValues(b.job.DestType, "dead_lettered").Inc()
			reason := b.Reason
			if reason == "" {
				reason = ReasonMaxAttempts
			}
			d.m.deadLetters.WithLabelValues(reason).Inc()
			d.log.Warn("message dead-lettered", slog.String("message_id", b.ID.String()), slog.String("reason", reason), slog.String("error", b.Error))
		case status == StatusRejected:
			d.cfg.OnRejected(b.Reason)
			d.log.Info("replayed message rejected", slog.String("message_id", b.ID.String()), slog.String("reason", b.Reason))
		case (b.Kind == Delivered || b.Kind == Failed || b.Kind == Dead) && !changed:
			d.m.staleResults.Inc()
		}
	}
}
