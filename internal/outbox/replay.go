package outbox

import (
	"errors"
	"log/slog"
	"time"

	"github.com/msgrouter/msgrouter/internal/routing"
)

// route routes a replayed message afresh (routing.Route, as the takeover routed it
// first, but bypassing the CAMS cache) and sends it on to its destination's lane.
func (d *Dispatcher) route(j *Job) {
	if j.Payload == nil {
		d.finish(j, Result{Kind: Rejected, Reason: routing.ReasonInvalidMessage, Error: "the message did not parse when it was received"})
		return
	}
	dec, err := routing.Route(d.ctx, d.cfg.LookupFresh, j.Address)
	switch {
	case err != nil:
		d.m.waits.WithLabelValues("cams_unavailable").Inc()
		d.finish(j, Result{Kind: Wait, Delay: d.cfg.BreakerWait})
	case dec.Hold:
		d.hold(j, time.Now())
	case dec.Rejected():
		d.finish(j, Result{Kind: Rejected, Reason: dec.Reason, Error: dec.Detail})
	default:
		if d.reroute(j, dec) {
			d.submit(j)
		}
	}
}

// reroute stores the job's new destination under its lease, so the old inbox
// never sees the message again (DESIGN §5), and points the job there. It reports
// whether it did, and the caller then submits the job to its new lane; otherwise
// the job is dropped when the lease was lost (another claim holds the row) and
// made to wait on other errors.
func (d *Dispatcher) reroute(j *Job, dec routing.Decision) bool {
	if err := d.cfg.Store.SetRoute(d.ctx, j.ID, j.Token, dec.DestType, dec.DestName, len(dec.SigningSecrets) > 0); err != nil {
		if !errors.Is(err, ErrLeaseLost) {
			d.log.WarnContext(d.ctx, "error storing a message's new route", slog.String("message_id", j.ID.String()), slog.Any("error", err))
			d.finish(j, Result{Kind: Wait, Delay: d.cfg.BreakerWait})
		}
		return false
	}
	j.Route, j.routeChecked = false, true
	j.DestType, j.DestName, j.AgentSecrets = dec.DestType, dec.DestName, len(dec.SigningSecrets) > 0
	j.SigningSecrets, j.haveSecrets = dec.SigningSecrets, true
	return true
}
