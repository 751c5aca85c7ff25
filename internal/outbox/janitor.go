package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/msgrouter/msgrouter/internal/periodic"
)

// Janitor keeps Postgres small and the outbox gauges fresh: it removes finished
// message records older than the retention in batches, and samples the outbox.
type Janitor struct {
	store     *Store
	retention time.Duration
	log       *slog.Logger
	pending   prometheus.Gauge
	oldest    prometheus.Gauge
	failed    *prometheus.GaugeVec
	purged    prometheus.Counter
	stop      context.CancelFunc
	wg        sync.WaitGroup
	once      sync.Once
}

// NewJanitor returns a Janitor; Start runs it.
func NewJanitor(store *Store, retention time.Duration, log *slog.Logger, reg prometheus.Registerer) *Janitor {
	f := promauto.With(reg)
	return &Janitor{
		store: store, retention: retention, log: log,
		pending: f.NewGauge(prometheus.GaugeOpts{Name: "msgrouter_outbox_pending_messages", Help: "Messages in the outbox (PENDING)."}),
		oldest: f.NewGauge(prometheus.GaugeOpts{Name: "msgrouter_outbox_oldest_due_age_seconds",
			Help: "How overdue the most overdue outbox row is (0 when none is due)."}),
		failed: f.NewGaugeVec(prometheus.GaugeOpts{Name: "msgrouter_failed_messages",
			Help: "Messages currently REJECTED or DEAD_LETTERED (replayable)."}, []string{"status"}),
		purged: f.NewCounter(prometheus.CounterOpts{Name: "msgrouter_messages_purged_total",
			Help: "Finished message records removed after MESSAGE_RETENTION."}),
	}
}

// Start launches the loops. Idempotent (only the first call starts them, and not
// after Stop); the error is always nil (the internal/service shape).
func (j *Janitor) Start(ctx context.Context) error {
	j.once.Do(func() { j.run(ctx) })
	return nil
}

// run starts the janitor's chores, each a loop of its own (internal/periodic), so a
// long vacuum or purge does not hold the gauges back: the outbox gauges sampled at
// once and every 5 s, the outbox vacuumed every 30 s (with the big tables every
// twentieth time, about every 10 minutes), expired records purged every minute.
func (j *Janitor) run(ctx context.Context) {
	ctx, j.stop = context.WithCancel(context.WithoutCancel(ctx))
	j.wg.Go(func() { periodic.Every(ctx, 0, 5*time.Second, j.sample) })
	vacuums := 0
	j.wg.Go(func() {
		periodic.Every(ctx, 30*time.Second, 30*time.Second, func(ctx context.Context) {
			vacuums++
			j.vacuum(ctx, vacuums%20 == 0)
		})
	})
	j.wg.Go(func() { periodic.Every(ctx, time.Minute, time.Minute, j.Purge) })
}

// Stop ends the loops and waits for them until ctx ends (DESIGN §8.4: shutdown is
// bounded, also while Postgres is down). The loops' statements are cancelled at
// once, so they end promptly; if ctx ends first Stop returns an error wrapping
// ctx.Err(). Idempotent.
func (j *Janitor) Stop(ctx context.Context) error {
	j.once.Do(func() {}) // a later Start does nothing
	if j.stop != nil {
		j.stop()
	}
	done := make(chan struct{})
	go func() { j.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("janitor did not stop in time: %w", ctx.Err())
	}
}

func (j *Janitor) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := j.store.Stats(ctx)
	if err != nil {
		return
	}
	j.pending.Set(float64(st.Pending))
	j.oldest.Set(st.OldestDueAge.Seconds())
	j.failed.WithLabelValues(StatusDeadLettered).Set(float64(st.DeadLettered))
	j.failed.WithLabelValues(StatusRejected).Set(float64(st.Rejected))
}

// vacuum reclaims the dead rows of the hot tables. Autovacuum should do it (and the
// migration tunes it for the outbox), but a server with autovacuum off or lagging
// would let the queue table grow without bound: every outbox row is inserted and
// deleted within seconds. SKIP_LOCKED makes replicas that collide skip, not wait.
func (j *Janitor) vacuum(ctx context.Context, all bool) {
	tables := "outbox"
	if all {
		tables = "outbox, failures, messages, delivery_attempts"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if _, err := j.store.pool.Exec(ctx, "VACUUM (SKIP_LOCKED) "+tables); err != nil && ctx.Err() == nil {
		j.log.WarnContext(ctx, "error vacuuming", slog.String("tables", tables), slog.Any("error", err))
	}
}

// Purge removes expired records in batches of 1000 until none is left.
func (j *Janitor) Purge(ctx context.Context) {
	cutoff := time.Now().Add(-j.retention)
	for ctx.Err() == nil {
		picked, n, err := j.store.purge(ctx, cutoff, 1000)
		if err != nil {
			j.log.WarnContext(ctx, "error purging old messages", slog.Any("error", err))
			return
		}
		j.purged.Add(float64(n))
		if picked < 1000 {
			return
		}
	}
}
