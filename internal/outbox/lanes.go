package outbox

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/msgrouter/msgrouter/internal/breaker"
)

type lane struct {
	key      string
	jobs     chan *Job
	lastUsed atomic.Int64
	route    bool // the lane that looks replayed rows up in CAMS
}

// routeLane is the key of the lane that routes replayed rows afresh.
const routeLane = "\x00route"

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
