package delivery

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

var propagator = propagation.TraceContext{}

// SpanName is the name of the span Tracing starts for each attempt.
const SpanName = "msgrouter.deliver"

// Tracing starts a producer span named SpanName for each delivery with tracer. Its
// parent is the trace context in d.Traceparent (the message's, from its sender),
// if any, else ctx's span; Tracing then replaces d.Traceparent with the span's own
// traceparent, which the Deliverer sends to the inbox: the trace of the original
// submission with the span id of the router's delivery span (DESIGN §5). A no-op
// tracer's span carries its parent's context, so without tracing the sender's
// traceparent is sent as it came; with no trace context at all, none ("").
func Tracing(tracer trace.Tracer) Middleware {
	return func(next Deliverer) Deliverer {
		return DelivererFunc(func(ctx context.Context, d *Delivery) error {
			if d.Traceparent != "" {
				ctx = propagator.Extract(ctx, propagation.MapCarrier{"traceparent": d.Traceparent})
			}
			ctx, span := tracer.Start(ctx, SpanName, trace.WithSpanKind(trace.SpanKindProducer))
			defer span.End()
			d.Traceparent = ""
			if sc := span.SpanContext(); sc.IsValid() {
				carrier := propagation.MapCarrier{}
				propagator.Inject(ctx, carrier)
				d.Traceparent = carrier["traceparent"]
			}
			return next.Deliver(ctx, d)
		})
	}
}
