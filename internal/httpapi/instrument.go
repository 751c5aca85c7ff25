package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Route returns the pattern r matches ("unmatched" for 404/405), a bounded metric
// label that never carries a raw path.
func (m *Mux) Route(r *http.Request) string {
	if _, p := m.mux.Handler(r); p != "" {
		return p
	}
	return "unmatched"
}

// Instrument counts requests by route and status code and times them, as
// msgrouter_<subsystem>_http_requests_total and
// msgrouter_<subsystem>_http_request_duration_seconds. Wrap it outermost, so
// answers given before routing (401, 429) are counted too.
func Instrument(next http.Handler, m *Mux, subsystem string, reg prometheus.Registerer) http.Handler {
	f := promauto.With(reg)
	requests := f.NewCounterVec(prometheus.CounterOpts{
		Name: "msgrouter_" + subsystem + "_http_requests_total",
		Help: "HTTP requests by route pattern and status code.",
	}, []string{"route", "code"})
	duration := f.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "msgrouter_" + subsystem + "_http_request_duration_seconds",
		Help:    "HTTP request latency by route pattern.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14),
	}, []string{"route"})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		route := m.Route(r)
		code := sw.status
		if code == 0 {
			code = http.StatusOK
		}
		requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
