// Package breaker holds what msgrouter's circuit breakers (sony/gobreaker) share:
// the metrics that show their state. Every breaker in a process (CAMS and every
// delivery destination) reports through one Metrics, labelled by breaker name.
package breaker

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Metrics exports breaker states and transitions:
//
//	msgrouter_breaker_state{breaker}             0 closed, 1 half-open, 2 open
//	msgrouter_breaker_transitions_total{breaker,to}
//
// Breaker names must be bounded (e.g. "cams", a destination origin), never a
// message id or an agent address. A nil *Metrics is valid and records nothing.
type Metrics struct {
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
}

// NewMetrics registers the breaker metrics on reg. Several components of one process
// may each call NewMetrics with the same registerer: the second call reuses the
// collectors the first registered instead of failing on a duplicate registration.
// A nil reg gives unregistered (but working) collectors.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	state := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "msgrouter_breaker_state",
		Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
	}, []string{"breaker"})
	transitions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "msgrouter_breaker_transitions_total",
		Help: "Circuit breaker state changes, by the state entered.",
	}, []string{"breaker", "to"})
	return &Metrics{
		state:       register(reg, state),
		transitions: register(reg, transitions),
	}
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a conflicting definition under the same name is a programming error
	}
	return c
}

// Observe sets the state gauge of breaker name, e.g. to show a freshly built breaker
// as closed before it ever changes state.
func (m *Metrics) Observe(name string, s gobreaker.State) {
	if m == nil {
		return
	}
	m.state.WithLabelValues(name).Set(float64(s))
}

// OnStateChange fits gobreaker.Settings.OnStateChange: it sets the gauge and counts
// the transition. gobreaker calls it with the breaker's mutex held, so it must not
// (and does not) call back into the breaker.
func (m *Metrics) OnStateChange(name string, _ gobreaker.State, to gobreaker.State) {
	if m == nil {
		return
	}
	m.state.WithLabelValues(name).Set(float64(to))
	m.transitions.WithLabelValues(name, to.String()).Inc()
}

// Forget removes the series of breaker name, for breakers that are discarded (an
// idle destination's breaker), so the label set stays bounded over time.
func (m *Metrics) Forget(name string) {
	if m == nil {
		return
	}
	m.state.DeleteLabelValues(name)
	m.transitions.DeletePartialMatch(prometheus.Labels{"breaker": name})
}
