package delivery_test

import (
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/delivery"
	"github.com/msgrouter/msgrouter/internal/delivery/deliverytest"
)

// The conformance suite (deliverytest.Run) over each transport bare, behind
// ByType, and behind the dispatcher's whole chain of decorators (breaker, rate
// limit, tracing, timeout), each with a real inbox.
func TestConformance(t *testing.T) {
	t.Parallel()
	transports := []struct {
		name string
		new  func(*testing.T) *deliverytest.Harness
	}{
		{"nats", deliverytest.NATS},
		{"http", deliverytest.HTTP},
	}
	wrappers := []struct {
		name string
		wrap func(t *testing.T, h *deliverytest.Harness) delivery.Deliverer
	}{
		{"bare", func(_ *testing.T, h *deliverytest.Harness) delivery.Deliverer { return h.Deliverer }},
		{"by type", func(_ *testing.T, h *deliverytest.Harness) delivery.Deliverer {
			return delivery.ByType{h.DestType: h.Deliverer}
		}},
		{"decorated", func(t *testing.T, h *deliverytest.Harness) delivery.Deliverer {
			tp := sdktrace.NewTracerProvider()
			t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
			return delivery.Chain(delivery.ByType{h.DestType: h.Deliverer},
				// Every failure case of a harness hits one destination's breaker.
				delivery.Breaker(breaker.NewSet(breaker.Settings{Failures: 1000}), time.Second),
				delivery.RateLimit(1000),
				delivery.Tracing(tp.Tracer("conformance")),
				delivery.Timeout(time.Minute),
			)
		}},
	}
	for _, tr := range transports {
		for _, w := range wrappers {
			t.Run(tr.name+"/"+w.name, func(t *testing.T) {
				t.Parallel()
				h := tr.new(t)
				h.Deliverer = w.wrap(t, h)
				deliverytest.Run(t, h)
			})
		}
	}
}
