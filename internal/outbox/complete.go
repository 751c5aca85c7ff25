package outbox

import (
	"context"
	"log/slog"
	"maps"
	"time"

	"github.com/google/uuid"
)

type done struct {
	Result
	job *Job
}

// completers is how many result writers run at once. A keyed message's successor
// is claimed when its result is written (ordergate.go), so a busy key moves at the
// pace of these writes: more writers, shorter batches, less time per key.
var completers = 4

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
	// Successors a lane did not take: written by this completer right after the
	// batch, never sent to d.results (admit).
	var turnedAway []done
	defer func() {
		if len(turnedAway) > 0 {
			// Their results (Wait or Release) keep their rows in the outbox and so
			// their keys held: this write claims no successor of its own.
			d.write(turnedAway)
		}
	}()
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
		jobs := make([]*Job, len(next))
		for i, c := range next {
			d.m.claimed.Inc()
			jobs[i] = d.NewJob(c, claimedAt, nil, false)
		}
		for _, j := range d.regate(d.writeCtx, jobs) {
			if j.Attempts == 0 {
				d.am.orderingWait.Observe(claimedAt.Sub(j.AcceptedAt).Seconds())
			}
			if r, ok := d.admit(j); !ok {
				turnedAway = append(turnedAway, done{Result: r, job: j})
			}
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
