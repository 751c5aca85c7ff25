package breaker

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"
)

func TestMetricsSharedRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	a := NewMetrics(reg)
	b := NewMetrics(reg) // a second component on the same registry must not panic

	a.Observe("cams", gobreaker.StateClosed)
	a.OnStateChange("cams", gobreaker.StateClosed, gobreaker.StateOpen)
	b.OnStateChange("nats:agents.x", gobreaker.StateClosed, gobreaker.StateOpen)
	b.OnStateChange("cams", gobreaker.StateOpen, gobreaker.StateHalfOpen)

	require.Equal(t, 1.0, value(t, a.state.WithLabelValues("cams")))
	require.Equal(t, 2.0, value(t, a.state.WithLabelValues("nats:agents.x")))
	require.Equal(t, 1.0, value(t, a.transitions.WithLabelValues("cams", "open")))
	require.Equal(t, 1.0, value(t, a.transitions.WithLabelValues("cams", "half-open")))

	b.Forget("nats:agents.x")
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "msgrouter_breaker_state" {
			require.Len(t, mf.GetMetric(), 1)
		}
	}

	var nilMetrics *Metrics
	nilMetrics.OnStateChange("x", gobreaker.StateClosed, gobreaker.StateOpen) // no panic
}

func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	require.NoError(t, m.Write(&d))
	if d.Gauge != nil {
		return d.GetGauge().GetValue()
	}
	return d.GetCounter().GetValue()
}
