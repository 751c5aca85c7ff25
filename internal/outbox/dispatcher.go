package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/msgrouter/msgrouter/internal/backoff"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/delivery"
	"github.com/msgrouter/msgrouter/internal/routing"
)

// LookupFunc looks an agent up in CAMS (routing.Lookup).
type LookupFunc = routing.Lookup

// Config configures a Dispatcher.
type Config struct {
	Store     *Store
	Deliverer delivery.Deliverer // New decorates it: Breakers, Rate, tracing, Timeout
	Breakers  delivery.Breakers  // internal/breaker.Set; nil = no breakers
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
	// LaneWait is the longest one Handoff or sweep waits, in all, for room in one
	// destination's full lane before calling the lane congested (a stuck or slow
	// inbox): its jobs then go back to the outbox until its queue has drained to
	// half (lanes.go). It bounds how long a slow inbox can hold up intake for other
	// agents, once per congestion episode; a lane delivering at ~1,000/s or more
	// takes a whole batch well within it, so a busy agent's backlog drains with
	// intake slowed to its pace and no write-back. Defaults to 1s.
	LaneWait time.Duration
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
	// ("" for none: unkeyed or unparseable), or ErrNoStreamMessage when the stream
	// has no message there (deleted, or not written yet). With it, a keyed message whose
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
	if c.LaneWait <= 0 {
		c.LaneWait = time.Second
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
	attemptAt      time.Time      // when the last attempt proper started (observe)
	attemptTook    time.Duration  // how long it took
	attemptCtx     attemptCtx     // the context of the attempt in progress (attempt.go)
	auth           *delivery.Auth // looked up for each attempt, never stored
	routeChecked   bool           // looked up in CAMS for this claim already (agentaware.go)
	deadline       time.Time      // local: after it, the lease may have passed to another claim
}

// Dispatcher delivers outbox rows. Rows reach it two ways: handed over in-process
// right after the takeover commit (the fast path), or claimed by its sweep (retries,
// expired leases, replays, other replicas' leftovers). Each destination gets its own
// lane with bounded concurrency, so a slow or dead inbox only ever holds its own
// lane (no head-of-line blocking). Results are written back in batches.
//
// The code is split by concept: dispatcher.go (config, New with the composition
// of the Deliverer's decorators, Start/Stop, Handoff), lanes.go (per-destination
// lanes and their reaper), sweep.go (claiming due rows), attempt.go (one delivery
// attempt: secrets and inbox credentials, the decorated Deliverer, classification
// into a Result), replay.go (routing replayed rows afresh with routing.Route, as the
// takeover routes them first; moving a row to a new route), complete.go (batched
// result writes with retry), ordergate.go (keyed messages in order) and
// agentaware.go (retries follow the agent's mapping, holds, expiry). The breaker,
// rate limit, tracing and timeout of an attempt are decorators of the Deliverer in
// internal/delivery (breaker.go, ratelimit.go, tracing.go, timeout.go).
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

	// deliverer is cfg.Deliverer decorated (New): every attempt goes through it.
	deliverer delivery.Deliverer

	mu    sync.Mutex
	lanes map[string]*lane
	// resultsMu guards results against sends after Stop closed it (a handoff
	// from a consumer that outlived its stop deadline).
	resultsMu     sync.RWMutex
	resultsClosed bool
	stopping      atomic.Bool
	stopped       chan struct{}  // closed when Stop begins: waiters for room give up
	waiters       sync.WaitGroup // callers of place waiting for room (lanes.go)
	queued        atomic.Int64
	laneIdle      time.Duration // how long a lane worker waits for a job before it exits (lanes.go)
	unwritten     atomic.Int64  // results given up on when Stop's context ended, reported by Stop

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
		stopped: make(chan struct{}),
		lanes:   map[string]*lane{},
		holds:   holds{agents: map[string]*heldAgent{}},
		gate:    orderGate{wake: make(chan struct{}, 1)},
	}
	d.laneIdle = laneIdle
	d.am = newAgentMetrics(cfg.Registerer, d)
	// The one place the attempt's decorators are composed, outermost first:
	// waiting behind a breaker or a rate limit comes before the span, the
	// deadline and the timing of the attempt proper.
	d.deliverer = delivery.Chain(cfg.Deliverer,
		delivery.Breaker(cfg.Breakers, cfg.BreakerWait),
		delivery.RateLimit(cfg.Rate),
		delivery.Tracing(d.tracer),
		delivery.Timeout(cfg.Timeout),
		d.observe,
	)
	return d
}

// Lease is how long claims made for this dispatcher last.
func (d *Dispatcher) Lease() time.Duration { return d.cfg.Lease }

// Start launches the order gate, the sweep, the lane reaper, the hold and expiry
// checks and the completers.
func (d *Dispatcher) Start(ctx context.Context) error {
	d.startOnce.Do(func() {
		d.ctx, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
		d.writeCtx, d.writeCancel = context.WithCancel(context.WithoutCancel(ctx))
		var sweepCtx context.Context
		sweepCtx, d.sweepStop = context.WithCancel(d.ctx)
		d.sweepCtx = sweepCtx
		d.workers.Add(5)
		go d.runGate(sweepCtx)
		go d.sweep(sweepCtx)
		go d.reapLanes(sweepCtx)
		go d.watchHolds(sweepCtx)
		go d.watchExpiry(sweepCtx)
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
		close(d.stopped)
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
		d.waiters.Wait() // a Handoff waiting for room releases its job
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

// Handoff queues jobs taken over by this process on their destinations' lanes. When
// a lane is full it waits for room (backpressure: the caller's intake slows to the
// delivery rate instead of writing jobs back to the outbox), at most
// Config.LaneWait per lane in all; a lane that has not taken them by then is
// congested and its jobs go back to the outbox (lanes.go). It also returns early
// when ctx ends or Stop begins (the waiting jobs are released: due again at once)
// and drops a job whose lease deadline passes while it waits (its row comes back
// after the lease). Every job is queued, sent back, released or dropped when it
// returns. Keyed jobs (not leased by the takeover) go to the order gate instead,
// without waiting: claimed once every earlier stream message has been taken over, if
// they lead their key (ordergate.go, DESIGN §5a).
func (d *Dispatcher) Handoff(ctx context.Context, jobs ...*Job) {
	var keyed []*Job
	unkeyed := jobs
	for i, j := range jobs {
		if j.OrderingKey == "" {
			if keyed != nil {
				unkeyed = append(unkeyed, j)
			}
			continue
		}
		if keyed == nil {
			unkeyed = append(make([]*Job, 0, len(jobs)), jobs[:i]...)
		}
		keyed = append(keyed, j)
	}
	d.place(ctx, unkeyed)
	if len(keyed) > 0 {
		if d.stopping.Load() {
			return // not leased: the rows come due after the lease
		}
		d.gate.add(keyed)
	}
}
