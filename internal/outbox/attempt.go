package outbox

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/delivery"
	"github.com/msgrouter/msgrouter/internal/routing"
)

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
