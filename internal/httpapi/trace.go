package httpapi

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Trace starts a server span per request, named by its route pattern ("GET /v1/x/{id}", never
// a raw path: bounded cardinality), continuing the caller's trace when the request
// carries a W3C traceparent (read with prop). The span records the status code and
// is marked as an error for 5xx answers (OpenTelemetry HTTP semantic conventions:
// 4xx is the client's error, not the server's). A nil tp leaves next unwrapped.
func Trace(next http.Handler, m *Mux, tp trace.TracerProvider, prop propagation.TextMapPropagator) http.Handler {
	if tp == nil {
		return next
	}
	tracer := tp.Tracer("github.com/msgrouter/msgrouter/internal/httpapi")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		route := m.Route(r)
		ctx, span := tracer.Start(ctx, route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", route)))
		defer span.End()
		sw := &StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", sw.Status()))
		if sw.Status() >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.Status()))
		}
	})
}
