package outbox

import (
	"errors"
	"log/slog"
	"time"

	"github.com/msgrouter/msgrouter/internal/routing"
)

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
