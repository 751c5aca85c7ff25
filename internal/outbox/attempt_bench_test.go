package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/delivery"
)

// BenchmarkAttempt measures one delivery attempt as a lane worker runs it (process:
// breaker, tracing, timeout, the Deliverer, classification, the result queued for
// writing) over an inbox that confirms at once. No Postgres: the results are
// drained, not written. Allocations per attempt are the figure to watch.
//
//	go test -run '^$' -bench Attempt -benchmem ./internal/outbox/
func BenchmarkAttempt(b *testing.B) {
	cases := []struct {
		name, destType, destName string
		tp                       trace.TracerProvider
	}{
		{"nats/noop-tracer", mapping.TypeNATSSubject, "agents.bench", noop.NewTracerProvider()},
		{"http/sdk-tracer", mapping.TypeHTTPEndpoint, "https://agent.example/inbox", sdktrace.NewTracerProvider()},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			inbox := inboxFunc(func(context.Context, *delivery.Delivery) error { return nil })
			d := New(Config{Deliverer: inbox, Breakers: breaker.NewSet(breaker.Settings{}), TracerProvider: tc.tp})
			d.ctx = context.Background()
			drained := make(chan struct{})
			go func() {
				for range d.results {
				}
				close(drained)
			}()
			l := &lane{key: breaker.Key(tc.destType, tc.destName)}
			j := d.NewJob(Claimed{ID: uuid.New(), Token: uuid.New(), Address: "agent-bench@example.com",
				DestType: tc.destType, DestName: tc.destName, Payload: []byte(`{"hello":"world"}`),
				Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", AcceptedAt: time.Now()},
				time.Now().Add(time.Hour), nil, false)
			b.ReportAllocs()
			for b.Loop() {
				d.process(l, j)
			}
			close(d.results)
			<-drained
		})
	}
}
