package outbox

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/delivery"
	"github.com/msgrouter/msgrouter/internal/routing"
)

// One delivery attempt: the checks that keep a job from being delivered at all,
// the agent's secrets and inbox credentials, then the decorated Deliverer (New
// composes it: breaker, rate limit, tracing, timeout) and the classification of
// what came back into a Result.

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
	d.deliver(j)
}

// attemptCtx is the context of an attempt: d.ctx carrying its job through the
// decorators to observe. It lives in the Job (a Job makes one attempt), so it
// costs no allocation per attempt as context.WithValue would. It is left in place
// after the attempt: a transport goroutine still holding a derived context may
// ask it for values.
type attemptCtx struct {
	context.Context
	job *Job
}

// attemptKey is the Value key of attemptCtx's job.
type attemptKey struct{}

func (c *attemptCtx) Value(key any) any {
	if key == (attemptKey{}) {
		return c.job
	}
	return c.Context.Value(key)
}

func (d *Dispatcher) deliver(j *Job) {
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
		Traceparent:     j.Traceparent, // the parent of the delivery span (delivery.Tracing)
		SigningSecrets:  j.SigningSecrets,
		Auth:            j.auth,
	}
	j.attemptAt, j.attemptTook = time.Time{}, 0
	j.attemptCtx = attemptCtx{Context: d.ctx, job: j}
	err := d.deliverer.Deliver(&j.attemptCtx, del)
	d.finish(j, d.result(j, err))
}

// observe is the innermost decorator: it times the attempt proper (after any
// breaker or rate-limit wait, inside the timeout) for the duration histogram and
// the attempt's row.
func (d *Dispatcher) observe(next delivery.Deliverer) delivery.Deliverer {
	return delivery.DelivererFunc(func(ctx context.Context, del *delivery.Delivery) error {
		start := time.Now()
		err := next.Deliver(ctx, del)
		dur := time.Since(start)
		d.m.duration.WithLabelValues(del.DestType).Observe(dur.Seconds())
		if j, ok := ctx.Value(attemptKey{}).(*Job); ok {
			j.attemptAt, j.attemptTook = start, dur
		}
		return err
	})
}

// result maps what the decorated Deliverer returned onto the row's next state.
func (d *Dispatcher) result(j *Job, err error) Result {
	res := Result{At: j.attemptAt, Duration: j.attemptTook}
	if err == nil {
		res.Kind = Delivered
		d.m.attempts.WithLabelValues(j.DestType, "delivered").Inc()
		return res
	}
	// Declared past the success path: errors.As makes it escape to the heap.
	var na *delivery.NotAttemptedError
	switch {
	case errors.As(err, &na):
		if na.Wait > 0 {
			// Waiting behind an open breaker is not an attempt.
			d.m.waits.WithLabelValues(na.Reason).Inc()
			return Result{Kind: Wait, Delay: na.Wait}
		}
		return Result{Kind: Release} // the rate-limit wait was cut short by Stop
	case d.ctx.Err() != nil:
		// Shutting down: not the destination's fault, not an attempt.
		return Result{Kind: Release}
	}
	e := delivery.Classify(err)
	res.Error = err.Error() // delivery.Timeout says "delivery timed out after …"
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
	d.log.LogAttrs(d.ctx, slog.LevelInfo, "delivery attempt failed",
		slog.String("message_id", j.ID.String()), slog.String("destination_type", j.DestType),
		slog.Int("attempt", j.Attempts+1), slog.String("error", res.Error))
	return res
}
