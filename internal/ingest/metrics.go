package ingest

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Rejection reasons, the values of msgrouter_ingest_rejected_total{reason}.
const (
	ReasonInvalid              = "invalid"
	ReasonTooLarge             = "too_large"
	ReasonUnsupportedMediaType = "unsupported_media_type"
	ReasonUnauthorized         = "unauthorized"
	ReasonForbidden            = "forbidden"
	ReasonRateLimited          = "rate_limited"
	ReasonUnavailable          = "unavailable"
	ReasonInternal             = "internal"
)

// reasonByStatus maps the message route's error statuses onto rejection reasons:
// the statuses of DESIGN §2 are one-to-one with the reasons, so counting from the
// status in one place catches every path, the auth middleware's 401 included.
var reasonByStatus = map[int]string{
	http.StatusBadRequest:            ReasonInvalid,
	http.StatusUnauthorized:          ReasonUnauthorized,
	http.StatusForbidden:             ReasonForbidden,
	http.StatusRequestEntityTooLarge: ReasonTooLarge,
	http.StatusUnsupportedMediaType:  ReasonUnsupportedMediaType,
	http.StatusTooManyRequests:       ReasonRateLimited,
	http.StatusServiceUnavailable:    ReasonUnavailable,
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	publish  prometheus.Histogram
	rejected *prometheus.CounterVec
	accepted *prometheus.CounterVec
}

// Latency buckets from 0.5ms to ~8s: a PubAck on a healthy node takes about a
// millisecond, PublishTimeout caps the slow end.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 15)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	f := promauto.With(reg)
	m := &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "msgrouter_ingest_requests_total",
			Help: "HTTP requests served, by route pattern (\"unmatched\" for unknown routes), status code and outcome.",
		}, []string{"route", "code", "outcome"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "msgrouter_ingest_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		publish: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "msgrouter_ingest_publish_duration_seconds",
			Help:    "Time from publishing a message to JetStream to its PubAck (or failure).",
			Buckets: latencyBuckets,
		}),
		accepted: f.NewCounterVec(prometheus.CounterOpts{
			Name: "msgrouter_ingest_accepted_total",
			Help: "Messages accepted (202), by sender: the API key's name, \"unnamed\" for a bare key, \"anonymous\" without keys.",
		}, []string{"sender"}),
		rejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "msgrouter_ingest_rejected_total",
			Help: "Messages refused, by reason: submissions to POST /v1/messages, and each refused item of POST /v1/messages/batch.",
		}, []string{"reason"}),
	}
	for _, reason := range reasonByStatus {
		m.rejected.WithLabelValues(reason) // export zeros, so rate() works from the start
	}
	m.rejected.WithLabelValues(ReasonInternal)
	return m, nil
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code), outcome(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
	if route == RouteMessages && code >= 400 {
		reason, ok := reasonByStatus[code]
		if !ok {
			reason = ReasonInternal
		}
		m.rejected.WithLabelValues(reason).Inc()
	}
}

// outcome groups status codes: accepted (202), ok (other success), rejected (4xx:
// the client must change something), unavailable (503: retry later), error (5xx).
func outcome(code int) string {
	switch {
	case code == http.StatusAccepted:
		return "accepted"
	case code < 400:
		return "ok"
	case code < 500:
		return "rejected"
	case code == http.StatusServiceUnavailable:
		return "unavailable"
	default:
		return "error"
	}
}
