package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/msgrouter/msgrouter/internal/periodic"
)

func (d *Dispatcher) sweep(ctx context.Context) {
	defer d.workers.Done()
	periodic.Loop(ctx, 0, d.poke, func(ctx context.Context) time.Duration {
		if d.sweepOnce(ctx) == d.cfg.ClaimBatch {
			return 0 // more may be due
		}
		return d.cfg.PollInterval
	})
}

func (d *Dispatcher) sweepOnce(ctx context.Context) int {
	room := int64(d.cfg.QueueLimit) - d.queued.Load()
	if room <= 0 {
		return 0 // lanes are busy: leave rows in the outbox, where they wait for free
	}
	claimedAt := time.Now()
	// Rows of congested lanes stay in the outbox (lanes.go); those of full lanes are
	// claimed and waited for, like a takeover's.
	rows, looked, parked, err := d.cfg.Store.claim(ctx, int(min(room, int64(d.cfg.ClaimBatch))), d.cfg.Lease, d.congestedAddresses())
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
	jobs := make([]*Job, len(rows))
	for i, c := range rows {
		jobs[i] = d.NewJob(c, claimedAt, nil, false)
	}
	// Leftovers of a gate (a replica that died, a lease that lapsed) pass the
	// order gate first: the head rule alone cannot see the stream.
	jobs = d.regate(ctx, jobs)
	for _, j := range jobs {
		if j.OrderingKey != "" && j.Attempts == 0 {
			d.am.orderingWait.Observe(claimedAt.Sub(j.AcceptedAt).Seconds())
		}
	}
	// Waits for room in full lanes (bounded by LaneWait per lane, by the jobs'
	// leases and by Stop, which ends ctx): the next claim comes once these are in.
	d.place(ctx, jobs)
	return looked // rows parked behind their key's head count too: more may be due
}
