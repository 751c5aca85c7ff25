package outbox

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	attempts     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	deliveries   *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	endToEnd     *prometheus.HistogramVec
	waits        *prometheus.CounterVec
	claimed      prometheus.Counter
	leaseExpired prometheus.Counter
	staleResults prometheus.Counter
	laneWait     prometheus.Histogram
	laneWaiters  prometheus.Gauge
	congestions  prometheus.Counter
	laneWorkers  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		attempts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "msgrouter_delivery_attempts_total",
			Help: "Delivery attempts by destination type and outcome (delivered, failed, permanent_failure).",
		}, []string{"destination_type", "outcome"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "msgrouter_delivery_duration_seconds",
			Help:    "Duration of one delivery attempt.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14),
		}, []string{"destination_type"}),
		deliveries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "msgrouter_deliveries_total",
			Help: "Messages that reached a terminal delivery state, by destination type and outcome (delivered, dead_lettered).",
		}, []string{"destination_type", "outcome"}),
		deadLetters: f.NewCounterVec(prometheus.CounterOpts{
			Name: "msgrouter_dead_letters_total",
			Help: "Messages dead-lettered, by reason.",
		}, []string{"reason"}),
		endToEnd: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "msgrouter_end_to_end_seconds",
			Help:    "Time from acceptance (JetStream storage) to confirmed delivery.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}, []string{"destination_type"}),
		waits: f.NewCounterVec(prometheus.CounterOpts{
			Name: "msgrouter_outbox_waits_total",
			Help: "Rows put back to wait without an attempt, by reason (breaker_open, lane_congested, lane_full, cams_unavailable).",
		}, []string{"reason"}),
		claimed: f.NewCounter(prometheus.CounterOpts{
			Name: "msgrouter_outbox_claimed_total",
			Help: "Rows claimed by the outbox sweep (retries, expired leases, replays, leftovers).",
		}),
		leaseExpired: f.NewCounter(prometheus.CounterOpts{
			Name: "msgrouter_outbox_lease_expired_total",
			Help: "Jobs dropped before delivery because their lease had run out (the row is claimed again).",
		}),
		staleResults: f.NewCounter(prometheus.CounterOpts{
			Name: "msgrouter_outbox_stale_results_total",
			Help: "Results ignored because another claim held the row by then.",
		}),
		laneWait: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "msgrouter_outbox_lane_wait_seconds",
			Help:    "Time a takeover's handoff or a sweep waited for room in full destination lanes (backpressure), per call that waited.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 10),
		}),
		laneWaiters: f.NewGauge(prometheus.GaugeOpts{
			Name: "msgrouter_outbox_lane_waiters",
			Help: "Jobs whose takeover handoff or sweep is waiting for room in a full destination lane right now (backpressure engaged).",
		}),
		congestions: f.NewCounter(prometheus.CounterOpts{
			Name: "msgrouter_outbox_lane_congestions_total",
			Help: "Times a destination lane was found congested (it took no room-waiter's jobs within LaneWait); its jobs then wait in the outbox until it drains.",
		}),
		laneWorkers: f.NewGauge(prometheus.GaugeOpts{
			Name: "msgrouter_outbox_lane_workers",
			Help: "Destination lane workers running (each delivers one message at a time; a lane starts them on demand up to DELIVERY_DESTINATION_CONCURRENCY).",
		}),
	}
}
