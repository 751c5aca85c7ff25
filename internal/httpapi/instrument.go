package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
// msgrouter_<subsystem>_http_requests_total{route,code} and
// msgrouter_<subsystem>_http_request_duration_seconds{route} (names and labels
// the dashboards and alerts use). The counting is promhttp's
// InstrumentHandlerCounter and InstrumentHandlerDuration; the route label (the
// pattern, never a raw path) is taken before the request is served. Wrap it
// outermost, so answers given before routing (401, 429) are counted too.
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
	route := promhttp.WithLabelFromCtx("route", func(ctx context.Context) string {
		r, _ := ctx.Value(routeKey{}).(string)
		return r
	})
	h := promhttp.InstrumentHandlerDuration(duration, promhttp.InstrumentHandlerCounter(requests, next, route), route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, m.Route(r))))
	})
}

type routeKey struct{}

// StatusWriter remembers the status code written, for metrics and logs.
type StatusWriter struct {
	http.ResponseWriter
	code int
}

// WriteHeader records code and passes it on.
func (w *StatusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Status is the code written (200 when the handler wrote none).
func (w *StatusWriter) Status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Recover turns a handler panic into a 500 with the contract's body, logged once.
func Recover(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.ErrorContext(r.Context(), "panic serving request", slog.String("method", r.Method),
					slog.String("route", r.Pattern), slog.String("panic", fmt.Sprint(v)))
				WriteError(w, http.StatusInternalServerError, CodeInternal, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}
