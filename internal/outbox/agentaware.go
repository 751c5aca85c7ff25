package outbox

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/periodic"
	"github.com/msgrouter/msgrouter/internal/routing"
)

// Agent-aware delivery (DESIGN §5, §5a): retries follow the agent's current CAMS
// mapping, messages for an INACTIVE agent with inactivePolicy HOLD wait without
// attempts, and expired messages are dead-lettered instead of delivered.

// holdPoll is how long a held row waits before it is looked at again when no
// release reaches it first (the release comes from the replica that held it, see
// watchHolds; the poll covers rows held by a replica that has gone since).
var holdPoll = 10 * time.Second

// agentMetrics are the collectors of the agent-aware delivery.
type agentMetrics struct {
	expired      prometheus.Counter
	held         prometheus.Gauge
	heldAgents   prometheus.GaugeFunc
	orderingWait prometheus.Histogram
	gateRenewed  prometheus.Counter
	gateReleased prometheus.Counter
	followed     *prometheus.CounterVec
}

func newAgentMetrics(reg prometheus.Registerer, d *Dispatcher) *agentMetrics {
	f := promauto.With(reg)
	m := &agentMetrics{
		expired: f.NewCounter(prometheus.CounterOpts{
			Name: "msgrouter_messages_expired_total",
			Help: "Messages dead-lettered as EXPIRED: their senderMetadata.expiresAt passed before delivery (DESIGN §5a).",
		}),
		held: f.NewGauge(prometheus.GaugeOpts{
			Name: "msgrouter_outbox_held_messages",
			Help: "Messages held (PENDING, reason AGENT_INACTIVE) for INACTIVE agents with inactivePolicy HOLD, as last counted.",
		}),
		heldAgents: f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "msgrouter_outbox_held_agents",
			Help: "Agents this replica holds messages for (INACTIVE with inactivePolicy HOLD).",
		}, func() float64 { return float64(d.holds.count()) }),
		orderingWait: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "msgrouter_ordering_wait_seconds",
			Help:    "Time from acceptance until a message with an ordering key is first claimed as the head of its key.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}),
		gateRenewed: f.NewCounter(prometheus.CounterOpts{
			Name: "msgrouter_order_gate_renewals_total",
			Help: "Leases of keyed messages renewed at the order gate because an earlier message of their key is still in the stream, not taken over (DESIGN §5a).",
		}),
		gateReleased: f.NewCounter(prometheus.CounterOpts{
			Name: "msgrouter_order_gate_releases_total",
			Help: "Keyed messages let through the order gate at their lease deadline because the gate could not tell whether an earlier message of their key is still in the stream; their order rests on the outbox alone (DESIGN §5a).",
		}),
		followed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "msgrouter_retries_rerouted_total",
			Help: "Retries whose fresh CAMS lookup changed their fate, by outcome (moved, rejected, held, last_known_inbox).",
		}, []string{"outcome"}),
	}
	for _, o := range []string{"moved", "rejected", "held", "last_known_inbox"} {
		m.followed.WithLabelValues(o) // exported from the start, so dashboards and alerts see 0
	}
	return m
}

// holds remembers the agents this replica saw INACTIVE with inactivePolicy HOLD, so
// their held messages cost one CAMS lookup per agent per HoldCheck, not one per
// message (DESIGN §5a).
type holds struct {
	mu     sync.Mutex
	agents map[string]*heldAgent
}

type heldAgent struct {
	mu       sync.Mutex
	checked  time.Time // last lookup
	m        *mapping.Mapping
	lastHeld time.Time // last time a message was held for it
}

func (h *holds) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.agents)
}

func (h *holds) get(address string) *heldAgent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.agents[address]
}

// lookupAgent returns the agent's mapping through the CAMS cache; an agent under
// hold is looked up at most once per HoldCheck.
func (d *Dispatcher) lookupAgent(ctx context.Context, address string) (*mapping.Mapping, error) {
	if h := d.holds.get(address); h != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		if time.Since(h.checked) < d.cfg.HoldCheck {
			return h.m, nil
		}
		m, err := d.cfg.Lookup(ctx, address)
		h.checked = time.Now()
		if err != nil && !errors.Is(err, mapping.ErrNotFound) {
			if h.m != nil {
				return h.m, nil // CAMS cannot say: the agent stays as last seen
			}
			return nil, err
		}
		if !routing.Held(m, err) {
			d.holds.mu.Lock()
			delete(d.holds.agents, address)
			d.holds.mu.Unlock()
		} else {
			h.m = m
		}
		return m, err
	}
	m, err := d.cfg.Lookup(ctx, address)
	if routing.Held(m, err) {
		d.holds.mu.Lock()
		if d.holds.agents[address] == nil {
			d.holds.agents[address] = &heldAgent{checked: time.Now(), m: m, lastHeld: time.Now()}
		}
		d.holds.mu.Unlock()
	}
	return m, err
}

// agentAware decides, before an attempt, what the agent's current state means for
// the job. It returns true when it has dealt with the job (expired, held, rejected,
// or sent on to its new inbox's lane) and false when the job should be attempted
// where it is.
func (d *Dispatcher) agentAware(l *lane, j *Job) bool {
	now := time.Now()
	if !j.ExpiresAt.IsZero() && !now.Before(j.ExpiresAt) {
		d.expire(j, ReasonExpired, "expired at "+j.ExpiresAt.UTC().Format(time.RFC3339Nano)+" before it could be delivered")
		return true
	}
	if j.Hold && !j.Swept {
		d.hold(j, now) // routing found the agent INACTIVE (HOLD) a moment ago
		return true
	}
	if l.route || !j.Swept || j.routeChecked || d.cfg.Lookup == nil {
		// Replays are routed afresh by route; rows handed over by the takeover
		// were routed a moment ago (no CAMS call on the hot path of first attempts).
		return false
	}
	j.routeChecked = true
	dec, err := routing.Route(d.ctx, d.lookupAgent, j.Address)
	switch {
	case err != nil:
		// CAMS cannot answer: the retry goes to the last known inbox (DESIGN §5).
		d.am.followed.WithLabelValues("last_known_inbox").Inc()
		return false
	case dec.Hold:
		d.am.followed.WithLabelValues("held").Inc()
		d.hold(j, now)
		return true
	case dec.Rejected():
		d.am.followed.WithLabelValues("rejected").Inc()
		d.finish(j, Result{Kind: Rejected, Reason: dec.Reason, Error: dec.Detail})
		return true
	case dec.DestType == j.DestType && dec.DestName == j.DestName:
		return false
	}
	// A new inbox: the retry goes there, and the old one never sees the message again.
	if d.reroute(j, dec) {
		d.am.followed.WithLabelValues("moved").Inc()
		d.submit(j)
	}
	return true
}

// hold puts a job back to wait for its INACTIVE agent (DESIGN §5a), or dead-letters
// it once HOLD_MAX_AGE has passed since acceptance. Holding is not an attempt.
func (d *Dispatcher) hold(j *Job, now time.Time) {
	limit := j.AcceptedAt.Add(d.cfg.HoldMaxAge)
	if !now.Before(limit) {
		d.expire(j, ReasonAgentInactive, "the agent stayed INACTIVE for longer than HOLD_MAX_AGE ("+d.cfg.HoldMaxAge.String()+")")
		return
	}
	d.holds.mu.Lock()
	h := d.holds.agents[j.Address]
	if h == nil {
		// Looked up (and found held) by the takeover: the watcher checks it next.
		h = &heldAgent{}
		d.holds.agents[j.Address] = h
	}
	d.holds.mu.Unlock()
	h.mu.Lock()
	h.lastHeld = now
	h.mu.Unlock()
	delay := min(holdPoll, limit.Sub(now))
	if !j.ExpiresAt.IsZero() {
		delay = min(delay, j.ExpiresAt.Sub(now))
	}
	d.finish(j, Result{Kind: Hold, Delay: max(delay, time.Millisecond)})
}

// expire dead-letters a job without an attempt.
func (d *Dispatcher) expire(j *Job, reason, detail string) {
	if reason == ReasonExpired {
		d.am.expired.Inc()
	}
	d.log.InfoContext(d.ctx, "message dead-lettered without an attempt", slog.String("message_id", j.ID.String()),
		slog.String("reason", reason), slog.String("detail", detail))
	d.finish(j, Result{Kind: Expire, Reason: reason, Error: detail})
}

// watchHolds runs the hold side of the agent-aware delivery: every HoldCheck it
// looks each held agent up once and releases its messages when it is no longer
// held (checkHolds).
func (d *Dispatcher) watchHolds(ctx context.Context) {
	defer d.workers.Done()
	periodic.Every(ctx, d.cfg.HoldCheck, d.cfg.HoldCheck, d.checkHolds)
}

// watchExpiry runs the expiry side: every ExpiryCheck it dead-letters expired
// messages wherever they wait (expireWaiting). A loop of its own, so that a hold
// check slowed by CAMS does not hold expiry back.
func (d *Dispatcher) watchExpiry(ctx context.Context) {
	defer d.workers.Done()
	periodic.Every(ctx, d.cfg.ExpiryCheck, d.cfg.ExpiryCheck, d.expireWaiting)
}

// expireWaiting dead-letters up to 1000 expired messages wherever they wait.
func (d *Dispatcher) expireWaiting(ctx context.Context) {
	n, err := d.cfg.Store.ExpireWaiting(ctx, 1000)
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "expiry sweep failed", slog.Any("error", err))
		}
		return
	}
	if n > 0 {
		d.am.expired.Add(float64(n))
		d.log.InfoContext(ctx, "expired messages dead-lettered", slog.Int("messages", n))
		d.Poke() // their keys' successors may be heads now
	}
}

func (d *Dispatcher) checkHolds(ctx context.Context) {
	d.holds.mu.Lock()
	addrs := make([]string, 0, len(d.holds.agents))
	for a, h := range d.holds.agents {
		h.mu.Lock()
		stale := time.Since(h.lastHeld) > 3*holdPoll
		h.mu.Unlock()
		if stale {
			delete(d.holds.agents, a) // nothing held for it any more
			continue
		}
		addrs = append(addrs, a)
	}
	d.holds.mu.Unlock()
	released := 0
	for _, a := range addrs {
		if ctx.Err() != nil {
			return
		}
		m, err := d.lookupAgent(ctx, a)
		if routing.Held(m, err) {
			continue
		}
		n, rerr := d.cfg.Store.ReleaseHeld(ctx, a)
		if rerr != nil {
			d.log.WarnContext(ctx, "error releasing held messages", slog.Any("error", rerr))
			continue
		}
		released += n
	}
	if released > 0 {
		d.Poke()
	}
	if n, err := d.cfg.Store.HeldCount(ctx); err == nil {
		d.am.held.Set(float64(n))
	}
}
