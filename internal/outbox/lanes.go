package outbox

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/periodic"
)

// Lanes and backpressure (issue 11).
//
// Each destination has a lane: a bounded queue in memory and its workers, at most
// Config.Concurrency, started on demand (newLane). Jobs reach a lane two ways:
//
//   - place (Handoff after a takeover, and the sweep) waits for room when the lane is
//     full, so intake slows to the delivery rate instead of writing the job back to
//     the outbox. A backlog of one busy agent drains with no round trip through
//     Postgres (before: 3–82 % of a 100k one-agent backlog went lane full → write
//     back → 1 s wait → claim again; BENCHMARKS.md, lever 12).
//   - submit (rows a result write claimed next, keyed heads from the order gate,
//     replayed or moved rows from a lane worker) never waits: those callers must not
//     block (a completer waiting for a lane whose workers wait for the completers
//     would deadlock; the gate serves every key). A full lane sends such a job back
//     to the outbox (lane_full), as before; they are few. A completer never sends
//     that result to d.results itself (admit: it writes it after its batch).
//
// A lane that does not take a caller's jobs within Config.LaneWait (counted per
// call and per lane, from the first wait) is congested: a stuck or slow inbox. Its
// waiters give up at once, and until its queue has drained to half, every new job
// for it goes straight back to the outbox (Wait, lane_congested) and the sweep
// leaves its agents' due rows where they are (congestedAddresses). So a slow or dead
// inbox holds intake for the other agents at most LaneWait per congestion episode,
// while the jobs it already holds keep their leases and are delivered (no
// head-of-line blocking). A lane whose inbox fails fast never congests: its breaker
// opens and its jobs leave the queue at once (breaker_open).
//
// Every wait is also bounded by the job's lease deadline (a job past it is dropped,
// as process does: its row comes back after the lease), by the caller's ctx and by
// Stop (the job is released, due at once). Waiters are counted in d.waiters so Stop
// writes their releases before it closes the results.

type lane struct {
	key  string
	jobs chan *Job
	// room holds a token after each take: it wakes one caller of place waiting for
	// room (a stale token only costs the waiter another look).
	room chan struct{}
	// congested is set and cleared with d.mu held; runLane reads it without.
	congested atomic.Bool
	// wake is closed when the lane becomes congested, so its waiters give up at once
	// rather than each at the end of its own LaneWait. Guarded by d.mu.
	wake chan struct{}
	// excluded are the agents whose jobs went back to the outbox during this
	// congestion episode: the sweep does not claim their rows until it ends. Guarded
	// by d.mu; at most maxExcluded.
	excluded map[string]struct{}
	lastUsed atomic.Int64
	route    bool // the lane that looks replayed rows up in CAMS

	// Workers start on demand (see newLane): running counts them (a slot is
	// reserved before its goroutine starts; never above max), idle those waiting
	// for a job, pending the jobs queued and not yet taken. All three are atomics
	// written in the order grow and retire rely on.
	max     int32
	running atomic.Int32
	idle    atomic.Int32
	pending atomic.Int32
}

// routeLane is the key of the lane that routes replayed rows afresh.
const routeLane = "\x00route"

// congestedWait is how long a job turned away by a congested or full lane waits in
// the outbox. The sweep skips a congested lane's agents until the lane drains, so
// this only spaces the retries of rows the exclusion does not cover.
const congestedWait = time.Second

// maxExcluded bounds the agents one congested lane keeps out of the sweep (a lane is
// one inbox: normally one agent). Rows of agents beyond it are claimed and turned
// away again, spaced by congestedWait.
const maxExcluded = 256

func laneKey(j *Job) string {
	if j.Route {
		return routeLane
	}
	return breaker.Key(j.DestType, j.DestName)
}

// admission is what enqueue did with a job.
type admission int

const (
	admitted  admission = iota // on the lane's queue
	stopping                   // the dispatcher is stopping: release the job
	laneFull                   // the queue is full
	congested                  // the lane is congested: the job goes back to the outbox
)

// enqueue puts j on its lane's queue if there is room, never waiting. With register,
// a laneFull answer also counts the caller in d.waiters (unless Stop has begun: then
// the answer is stopping), so Stop waits for it; the caller calls d.waiters.Done.
// wake is the lane's congestion signal, for a laneFull answer.
func (d *Dispatcher) enqueue(j *Job, register bool) (l *lane, a admission, wake <-chan struct{}) {
	key := laneKey(j)
	d.mu.Lock()
	defer d.mu.Unlock()
	// Checked under d.mu: Stop sets it before it takes d.mu to close the lanes, so
	// no job is sent on a closed queue and no waiter registers after Stop waits.
	if d.stopping.Load() {
		return nil, stopping, nil
	}
	l = d.lanes[key]
	if l == nil {
		l = d.newLane(key)
	}
	if l.congested.Load() {
		l.exclude(j.Address)
		return l, congested, nil
	}
	select {
	case l.jobs <- j:
		d.queued.Add(1)
		l.pending.Add(1)
		d.grow(l)
		return l, admitted, nil
	default:
	}
	if register {
		d.waiters.Add(1)
	}
	return l, laneFull, l.wake
}

// turnAway finishes a job a lane did not take: released when stopping, back to the
// outbox otherwise.
func (d *Dispatcher) turnAway(j *Job, a admission) {
	if a != admitted {
		d.finish(j, d.turnedAway(a))
	}
}

// turnedAway is the result of a job a lane did not take (a != admitted).
func (d *Dispatcher) turnedAway(a admission) Result {
	switch a {
	case laneFull:
		d.m.waits.WithLabelValues("lane_full").Inc()
		return Result{Kind: Wait, Delay: congestedWait}
	case congested:
		d.m.waits.WithLabelValues("lane_congested").Inc()
		return Result{Kind: Wait, Delay: congestedWait}
	}
	return Result{Kind: Release} // stopping
}

// submit queues j without waiting; a full or congested lane sends it back to the
// outbox. For callers that must never block (see the top of this file), except the
// completers: they use admit.
func (d *Dispatcher) submit(j *Job) {
	if _, a, _ := d.enqueue(j, false); a != admitted {
		d.turnAway(j, a)
	}
}

// admit is submit for a completer: it queues j without waiting and, when the lane
// does not take it, returns the result to write instead of sending it to d.results.
// A completer must never send there: with the channel full and every completer
// sending, nobody would drain it (a deadlock that also kept Stop from returning),
// and a lane turns jobs away exactly when results pile up (Postgres slow, lanes
// full or congested).
func (d *Dispatcher) admit(j *Job) (Result, bool) {
	if _, a, _ := d.enqueue(j, false); a != admitted {
		r := d.turnedAway(a)
		r.ID, r.Token = j.ID, j.Token
		r.Address, r.OrderingKey = j.Address, j.OrderingKey
		return r, false
	}
	return Result{}, true
}

// place queues jobs on their lanes, waiting for room in full ones (backpressure; see
// the top of this file). Jobs for lanes with room go first, so one full lane never
// delays the others' jobs of the same call; a lane's jobs keep their order. Returns
// once every job is queued, sent back to the outbox, released or dropped.
func (d *Dispatcher) place(ctx context.Context, jobs []*Job) {
	var blocked []*Job
	var full map[string]bool
	for _, j := range jobs {
		if len(full) > 0 && full[laneKey(j)] {
			blocked = append(blocked, j)
			continue
		}
		switch _, a, _ := d.enqueue(j, false); a {
		case admitted:
		case laneFull:
			if full == nil {
				full = map[string]bool{}
			}
			full[laneKey(j)] = true
			blocked = append(blocked, j)
		default:
			d.turnAway(j, a)
		}
	}
	if len(blocked) == 0 {
		return
	}
	start := time.Now()
	until := make(map[string]time.Time, len(full))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for _, j := range blocked {
		d.await(ctx, j, until, timer)
	}
	d.m.laneWait.Observe(time.Since(start).Seconds())
}

// await waits until j's lane takes it, or the lane congests (the caller has waited
// LaneWait on it: until[key] marks the end), j's lease deadline passes, ctx ends or
// Stop begins.
func (d *Dispatcher) await(ctx context.Context, j *Job, until map[string]time.Time, timer *time.Timer) {
	key := laneKey(j)
	registered := false
	defer func() {
		if registered {
			d.m.laneWaiters.Dec()
			d.waiters.Done() // after the job's last finish: Stop writes it
		}
	}()
	for {
		l, a, wake := d.enqueue(j, !registered)
		if a != laneFull {
			d.turnAway(j, a)
			return
		}
		if !registered {
			registered = true
			d.m.laneWaiters.Inc()
		}
		now := time.Now()
		end, ok := until[key]
		if !ok {
			end = now.Add(d.cfg.LaneWait)
			until[key] = end
		}
		switch {
		case !now.Before(j.deadline):
			// Waiting any longer would deliver past the lease (see process).
			d.m.leaseExpired.Inc()
			return
		case !now.Before(end):
			if d.congest(l, j.Address) {
				d.turnAway(j, congested)
				return
			}
			continue // it drained meanwhile: the next enqueue finds room
		}
		// Since Go 1.23 Reset leaves no stale tick behind: no Stop-and-drain.
		timer.Reset(min(end.Sub(now), j.deadline.Sub(now)))
		select {
		case <-l.room:
		case <-wake: // congested by another waiter: the next enqueue says so
		case <-timer.C:
		case <-ctx.Done():
			d.turnAway(j, stopping)
			return
		case <-d.stopped: // the next enqueue says stopping
		}
	}
}

// congest marks l congested (see the top of this file) because a job of address
// found no room in time, and reports whether it is. A lane whose queue has drained
// to half since the caller last found it full is not: only a take ends an episode
// (runLane), so marking a lane whose workers have nothing left to take would leave
// it congested for good.
func (d *Dispatcher) congest(l *lane, address string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !l.congested.Load() {
		if len(l.jobs) <= cap(l.jobs)/2 {
			return false
		}
		l.congested.Store(true)
		close(l.wake)
		d.m.congestions.Inc()
	}
	l.exclude(address)
	return true
}

// exclude keeps address's rows out of the sweep for the rest of the congestion
// episode. Called with d.mu held.
func (l *lane) exclude(address string) {
	if len(l.excluded) < maxExcluded && !l.route {
		l.excluded[address] = struct{}{}
	}
}

// uncongest ends l's congestion episode once its queue has drained to half, and
// pokes the sweep: the rows it turned away are due.
func (d *Dispatcher) uncongest(l *lane) {
	d.mu.Lock()
	if !l.congested.Load() {
		d.mu.Unlock()
		return
	}
	l.congested.Store(false)
	l.wake = make(chan struct{})
	clear(l.excluded)
	d.mu.Unlock()
	d.Poke()
}

// congestedAddresses are the agents whose rows the sweep leaves in the outbox: their
// lanes are congested, so claiming them would only send them back.
func (d *Dispatcher) congestedAddresses() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, l := range d.lanes {
		if l.congested.Load() {
			for a := range l.excluded {
				out = append(out, a)
			}
		}
	}
	return out
}

// laneIdle is how long a lane worker waits for a job before it exits (the lane's
// last one stays). Long enough that a lane busy now and then keeps its workers
// between bursts; short enough that a drained lane soon holds one goroutine.
const laneIdle = 5 * time.Second

// newLane makes a lane; its workers start on demand. Called with d.mu held.
//
// A lane used to start all of its Concurrency workers at once: 256 agents ran 8,192
// goroutines, whose stacks the runtime grew on their first deliveries and again after
// the GC shrank them while idle (runtime.copystack ~9 % of the router's CPU in a
// 256-agent drain; BENCHMARKS.md). Now a lane adds a worker when a job is queued and
// none of its workers is free to take it (grow), up to Concurrency, and a worker that
// has waited laneIdle for a job exits unless it is the lane's last (retire); the last
// one exits when the lane closes. The bound per destination is unchanged; only idle
// workers are gone.
func (d *Dispatcher) newLane(key string) *lane {
	// The queue holds a few batches' worth, so a burst handed over after a
	// takeover waits here rather than in the caller.
	l := &lane{key: key, jobs: make(chan *Job, max(1024, 16*d.cfg.Concurrency)), room: make(chan struct{}, 1),
		wake: make(chan struct{}), excluded: map[string]struct{}{}, route: key == routeLane}
	l.lastUsed.Store(time.Now().UnixNano())
	l.max = int32(d.cfg.Concurrency)
	if l.route {
		l.max = 8
	}
	d.lanes[key] = l
	return l // enqueue queues its first job and starts its first worker (grow)
}

// grow starts another worker for l when more jobs are queued than its workers free
// to take them (idle: waiting for a job, or started and not yet running), up to
// l.max. Called after each job queued (enqueue).
//
// A count can only rise above what the lane's workers will take by a job queued (the
// caller of grow then looks) or by a worker retiring (retire then looks). Both write
// before they read, and these atomics are sequentially consistent, so when the two
// race, one of them sees the other: the caller starts a worker, or the retiring
// worker stays. A worker taking a job lowers idle before pending, so a reader (pending
// first) never sees fewer jobs than free workers would leave. The other races only
// start a worker too many, never one above l.max.
func (d *Dispatcher) grow(l *lane) {
	if l.pending.Load() > l.idle.Load() && l.reserve() {
		d.startWorker(l)
	}
}

// reserve takes a worker slot if the lane has one free.
func (l *lane) reserve() bool {
	for {
		n := l.running.Load()
		if n >= l.max {
			return false
		}
		if l.running.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// retire gives up the slot of a worker that waited laneIdle for a job and reports
// whether it exits: the lane's last worker stays, and so does one that finds more
// jobs queued than workers free to take them (see grow).
func (l *lane) retire() bool {
	for {
		n := l.running.Load()
		if n <= 1 {
			return false
		}
		if l.running.CompareAndSwap(n, n-1) {
			break
		}
	}
	l.idle.Add(-1)
	if l.pending.Load() > l.idle.Load() && l.reserve() {
		l.idle.Add(1)
		return false
	}
	return true
}

// startWorker runs a worker in a slot already reserved (l.running counts it). It is
// idle from now: ready to take a job.
func (d *Dispatcher) startWorker(l *lane) {
	l.idle.Add(1)
	d.m.laneWorkers.Inc()
	// The caller holds d.mu, which Stop takes before it waits for the workers, and
	// checked d.stopping under it (enqueue): this Add never races Stop's Wait.
	d.workers.Add(1)
	go d.runLane(l)
}

func (d *Dispatcher) runLane(l *lane) {
	defer d.workers.Done()
	defer d.m.laneWorkers.Dec()
	var idle *time.Timer // made on the first wait: a worker that never waits needs none
	defer func() {
		if idle != nil {
			idle.Stop()
		}
	}()
	for {
		var j *Job
		var ok bool
		select {
		case j, ok = <-l.jobs:
		default:
			// Nothing queued: wait, and leave after laneIdle unless this is the
			// lane's last worker (retire).
			if idle == nil {
				idle = time.NewTimer(d.laneIdle)
			} else {
				idle.Reset(d.laneIdle) // since Go 1.23: no stale tick to drain
			}
			select {
			case j, ok = <-l.jobs:
			case <-idle.C:
				if l.retire() {
					return
				}
				continue
			}
		}
		l.idle.Add(-1) // before pending: see grow
		if !ok {       // the lane is closed (Stop, reapLanes) and its queue empty
			l.running.Add(-1)
			return
		}
		l.pending.Add(-1)
		d.queued.Add(-1)
		l.lastUsed.Store(time.Now().UnixNano())
		select {
		case l.room <- struct{}{}: // a slot is free: wake a waiting caller of place
		default:
		}
		if l.congested.Load() && len(l.jobs) <= cap(l.jobs)/2 {
			d.uncongest(l)
		}
		d.process(l, j)
		l.idle.Add(1)
	}
}

// reapLanes closes lanes idle for a minute, every 30 s, so the lane map does not
// grow with every destination ever seen.
func (d *Dispatcher) reapLanes(ctx context.Context) {
	defer d.workers.Done()
	periodic.Every(ctx, 30*time.Second, 30*time.Second, func(context.Context) {
		idle := time.Now().Add(-time.Minute).UnixNano()
		d.mu.Lock()
		for k, l := range d.lanes {
			if len(l.jobs) == 0 && l.lastUsed.Load() < idle {
				close(l.jobs)
				delete(d.lanes, k)
			}
		}
		d.mu.Unlock()
	})
}
