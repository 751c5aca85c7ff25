package audit

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/msgrouter/msgrouter/internal/periodic"
	"github.com/msgrouter/msgrouter/internal/service"
)

// lockKey is the Postgres advisory lock one audit holds, so that of many router
// replicas sharing a database only one audits at a time (each would read the same
// stream and ask the same questions).
const lockKey int64 = 0x6d73677261756474 // "msgraudt"

// SchedulerConfig is the router's periodic audit (AUDIT_INTERVAL, DESIGN §10 as
// metrics).
type SchedulerConfig struct {
	// Interval between audits; zero turns the scheduler off (metrics are still
	// registered, at zero, with no last-run time).
	Interval time.Duration
	// Audit is each run's window, grace and threshold.
	Audit      Config
	JS         jetstream.JetStream
	DB         *pgxpool.Pool
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Scheduler runs an audit every Interval (the first after one Interval, jittered
// by up to 10%, so a replica that restarts often does not audit at each start)
// and exports the last report as gauges an alert can use:
//
//	msgrouter_audit_missing_messages            stream messages without a record after the grace period
//	msgrouter_audit_missing_acked_messages      of those, already acked by the router's consumer
//	msgrouter_audit_stuck_pending_messages      records PENDING longer than the threshold
//	msgrouter_audit_stream_messages             stream messages read by the last audit
//	msgrouter_audit_last_run_timestamp_seconds  when this replica last completed an audit
//	msgrouter_audit_runs_total{outcome}         ok, gap (something missing), skipped (another replica held the lock), error
//
// The gauges of a replica keep its last audit's values while other replicas win
// the lock; the alert rules therefore only look at replicas whose last run is
// recent (deploy/prometheus/alerts.yml, group msgrouter-audit).
type Scheduler struct {
	cfg  SchedulerConfig
	m    *schedMetrics
	mu   sync.Mutex
	stop context.CancelFunc
	done chan struct{}
}

type schedMetrics struct {
	missing, missingAcked, stuck, streamMsgs, lastRun prometheus.Gauge
	runs                                              *prometheus.CounterVec
}

// NewScheduler registers the audit metrics on cfg.Registerer.
func NewScheduler(cfg SchedulerConfig) *Scheduler {
	f := promauto.With(cfg.Registerer)
	m := &schedMetrics{
		missing: f.NewGauge(prometheus.GaugeOpts{Name: "msgrouter_audit_missing_messages",
			Help: "Stream messages (ROUTER_MESSAGES, audit window) without a Postgres record after the grace period, at the last audit."}),
		missingAcked: f.NewGauge(prometheus.GaugeOpts{Name: "msgrouter_audit_missing_acked_messages",
			Help: "Of the missing messages, those the router's consumer had already acked (lost for sure), at the last audit."}),
		stuck: f.NewGauge(prometheus.GaugeOpts{Name: "msgrouter_audit_stuck_pending_messages",
			Help: "Records PENDING longer than the audit's threshold (held messages excluded), at the last audit."}),
		streamMsgs: f.NewGauge(prometheus.GaugeOpts{Name: "msgrouter_audit_stream_messages",
			Help: "Stream messages read by the last audit."}),
		lastRun: f.NewGauge(prometheus.GaugeOpts{Name: "msgrouter_audit_last_run_timestamp_seconds",
			Help: "Unix time this replica last completed an audit (0: never)."}),
		runs: f.NewCounterVec(prometheus.CounterOpts{Name: "msgrouter_audit_runs_total",
			Help: "Audits by outcome: ok, gap (something missing), skipped (another replica was auditing), error."}, []string{"outcome"}),
	}
	for _, o := range []string{"ok", "gap", "skipped", "error"} {
		m.runs.WithLabelValues(o)
	}
	return &Scheduler{cfg: cfg, m: m}
}

// Start launches the loop (nothing when Interval is zero); the loop also ends
// with ctx. Stop ends it. Idempotent; the error is always nil (the
// internal/service shape).
func (s *Scheduler) Start(ctx context.Context) error {
	if s.cfg.Interval <= 0 {
		s.cfg.Logger.InfoContext(ctx, "scheduled audit off (AUDIT_INTERVAL=0)")
		return nil
	}
	a := s.cfg.Audit.withDefaults()
	s.cfg.Logger.InfoContext(ctx, "scheduled audit on", slog.Duration("audit_interval", s.cfg.Interval),
		slog.Duration("audit_window", a.Since), slog.Duration("audit_grace", a.Grace),
		slog.Duration("audit_pending_threshold", a.PendingThreshold))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return nil
	}
	ctx, s.stop = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.loop(ctx, s.done)
	return nil
}

// Stop cancels a running audit and waits for the loop to end, until ctx ends
// (DESIGN §8.4: shutdown is bounded, also while Postgres or NATS is down); then it
// returns an error wrapping ctx.Err() and the loop ends as soon as the audit's
// cancelled call returns. Idempotent; a Stop before Start does nothing.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	stop, done := s.stop, s.done
	if done == nil {
		// Never started: a later Start does nothing either.
		s.done = make(chan struct{})
		close(s.done)
	}
	s.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop()
	return service.Wait(ctx, "scheduled audit", done)
}

func (s *Scheduler) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	jitter := time.Duration(rand.Int64N(int64(s.cfg.Interval)/10 + 1))
	periodic.Every(ctx, s.cfg.Interval+jitter, s.cfg.Interval, func(ctx context.Context) { _, _ = s.RunOnce(ctx) })
}

// ErrSkipped means another replica was auditing: this one did not.
var ErrSkipped = errors.New("another replica is auditing")

// RunOnce audits now, unless another replica holds the audit lock (ErrSkipped),
// updates the metrics and logs the outcome: a gap at ERROR with the first missing
// ids, stuck messages at WARN.
func (s *Scheduler) RunOnce(ctx context.Context) (*Report, error) {
	log := s.cfg.Logger
	conn, err := s.cfg.DB.Acquire(ctx)
	if err != nil {
		s.m.runs.WithLabelValues("error").Inc()
		return nil, err
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&locked); err != nil {
		s.m.runs.WithLabelValues("error").Inc()
		if ctx.Err() == nil {
			log.WarnContext(ctx, "audit could not take its lock", slog.Any("error", err))
		}
		return nil, err
	}
	if !locked {
		s.m.runs.WithLabelValues("skipped").Inc()
		return nil, ErrSkipped
	}
	defer func() {
		// A session lock: released explicitly, or with the connection if that fails.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", lockKey); err != nil {
			_ = conn.Conn().Close(uctx)
		}
	}()

	r, err := Run(ctx, s.cfg.JS, s.cfg.DB, s.cfg.Audit)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err // shutting down: not a failure
		}
		s.m.runs.WithLabelValues("error").Inc()
		log.WarnContext(ctx, "audit failed", slog.Any("error", err))
		return nil, err
	}
	s.m.missing.Set(float64(r.Missing))
	s.m.missingAcked.Set(float64(r.MissingAcked))
	s.m.stuck.Set(float64(r.StuckPending))
	s.m.streamMsgs.Set(float64(r.StreamMessages))
	s.m.lastRun.Set(float64(r.FinishedAt.UnixMilli()) / 1000)
	attrs := []any{slog.Int64("stream_messages", r.StreamMessages), slog.Int64("missing", r.Missing),
		slog.Int64("missing_acked", r.MissingAcked), slog.Int64("in_grace", r.InGrace),
		slog.Int64("stuck_pending", r.StuckPending), slog.Int64("held", r.Held),
		slog.Duration("took", r.FinishedAt.Sub(r.StartedAt))}
	if !r.OK() {
		s.m.runs.WithLabelValues("gap").Inc()
		ids := make([]string, 0, min(len(r.MissingIDs), 20))
		for _, m := range r.MissingIDs[:min(len(r.MissingIDs), 20)] {
			ids = append(ids, m.MessageID.String())
		}
		log.ErrorContext(ctx, "audit: accepted messages have no record (run `routerctl audit` for the full list)",
			append(attrs, slog.Any("first_missing_message_ids", ids))...)
		return r, nil
	}
	s.m.runs.WithLabelValues("ok").Inc()
	if r.StuckPending > 0 {
		log.WarnContext(ctx, "audit: messages PENDING longer than the threshold", attrs...)
	} else {
		log.InfoContext(ctx, "audit: every accepted message is accounted for", attrs...)
	}
	return r, nil
}
