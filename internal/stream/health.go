package stream

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/msgrouter/msgrouter/internal/periodic"
)

// HealthInterval is how often the router reads ROUTER_MESSAGES' cluster state for
// its gauges.
const HealthInterval = 15 * time.Second

// Health exports the replica health of ROUTER_MESSAGES (issue 9: alerts for stream
// replicas lagging or offline; deploy/prometheus/alerts.yml):
//
//   - msgrouter_stream_replicas: the stream's configured replica count;
//   - msgrouter_stream_replicas_current: replicas online and current, the leader
//     included (on a single server: 1 while the stream answers);
//   - msgrouter_stream_replica_lag_operations: the largest follower lag, in raft
//     operations, as the server reports it;
//   - msgrouter_stream_has_leader: 1 when the stream answered with a leader, else 0.
//
// Every router replica reports the same stream: alert on max()/min(), never sum().
type Health struct {
	replicas, current, lag, leader prometheus.Gauge
}

// NewHealth registers the gauges on reg.
func NewHealth(reg prometheus.Registerer) *Health {
	f := promauto.With(reg)
	return &Health{
		replicas: f.NewGauge(prometheus.GaugeOpts{Name: "msgrouter_stream_replicas", Help: "Configured replicas of the ROUTER_MESSAGES stream."}),
		current:  f.NewGauge(prometheus.GaugeOpts{Name: "msgrouter_stream_replicas_current", Help: "Replicas of ROUTER_MESSAGES online and current, the leader included."}),
		lag:      f.NewGauge(prometheus.GaugeOpts{Name: "msgrouter_stream_replica_lag_operations", Help: "Largest lag of a ROUTER_MESSAGES follower, in raft operations."}),
		leader:   f.NewGauge(prometheus.GaugeOpts{Name: "msgrouter_stream_has_leader", Help: "1 when ROUTER_MESSAGES answered with a leader, else 0."}),
	}
}

// Observe reads the stream's state once (bounded by ReadyTimeout) and sets the gauges.
func (h *Health) Observe(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	st, err := js.Stream(ctx, Name)
	if err != nil {
		h.leader.Set(0)
		h.current.Set(0)
		return err
	}
	info := st.CachedInfo()
	h.replicas.Set(float64(max(1, info.Config.Replicas)))
	c := info.Cluster
	if c == nil { // a single server: the stream answered, it is its own leader
		h.leader.Set(1)
		h.current.Set(1)
		h.lag.Set(0)
		return nil
	}
	current, lag := 0, uint64(0)
	if c.Leader != "" {
		h.leader.Set(1)
		current = 1
	} else {
		h.leader.Set(0)
	}
	for _, r := range c.Replicas {
		if r.Current && !r.Offline {
			current++
		}
		lag = max(lag, r.Lag)
	}
	h.current.Set(float64(current))
	h.lag.Set(float64(lag))
	return nil
}

// Run observes at once and then interval after each observation returns
// (internal/periodic), until ctx ends; it returns once no observation is running.
// Failures are logged at debug level (readiness and the gauges already say the
// stream is unhealthy).
func (h *Health) Run(ctx context.Context, js jetstream.JetStream, interval time.Duration, log *slog.Logger) {
	periodic.Every(ctx, 0, interval, func(ctx context.Context) {
		if err := h.Observe(ctx, js); err != nil && ctx.Err() == nil {
			log.Debug("error reading the stream's state", "stream", Name, "error", err)
		}
	})
}
