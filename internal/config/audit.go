package config

import "time"

// Audit is the router's scheduled audit (internal/audit): the reconciliation of
// `routerctl audit` (DESIGN §10), run on a schedule and exported as metrics.
type Audit struct {
	// Interval is AUDIT_INTERVAL. Defaults to 5m; 0 turns the scheduled audit off.
	// Only one replica audits at a time (a Postgres advisory lock).
	Interval time.Duration
	// Window is AUDIT_WINDOW: how far back each audit reads the stream. Defaults to
	// 1h; the router never reads further back than MESSAGE_RETENTION.
	Window time.Duration
	// Grace is AUDIT_GRACE: how long a stream message may go unrecorded before it
	// counts as missing. Defaults to 1m.
	Grace time.Duration
	// PendingThreshold is AUDIT_PENDING_THRESHOLD: a record PENDING longer than
	// this is reported as stuck. Defaults to 5m.
	PendingThreshold time.Duration
}

func loadAudit(e *Env) Audit {
	return Audit{
		Interval:         e.Duration("AUDIT_INTERVAL", 5*time.Minute, 0, 7*24*time.Hour),
		Window:           e.Duration("AUDIT_WINDOW", time.Hour, time.Minute, 100*365*24*time.Hour),
		Grace:            e.Duration("AUDIT_GRACE", time.Minute, 0, 24*time.Hour),
		PendingThreshold: e.Duration("AUDIT_PENDING_THRESHOLD", 5*time.Minute, time.Second, 100*365*24*time.Hour),
	}
}
