package breaker

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"
)

func TestKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ, name, want string
	}{
		{"NATS_SUBJECT", "agents.sales.inbox", "nats:agents.sales.inbox"},
		{"HTTP_ENDPOINT", "https://Example.COM/hook?x=1", "https://example.com:443"},
		{"HTTP_ENDPOINT", "http://example.com/a", "http://example.com:80"},
		{"HTTP_ENDPOINT", "HTTP://example.com:8080/a/b", "http://example.com:8080"},
		{"HTTP_ENDPOINT", "https://user:pw@example.com/", "https://example.com:443"},
		{"HTTP_ENDPOINT", "https://[2001:DB8::1]/x", "https://[2001:db8::1]:443"},
		{"HTTP_ENDPOINT", "http://[::1]:9000", "http://[::1]:9000"},
		{"HTTP_ENDPOINT", "not a url", "not a url"},
		{"HTTP_ENDPOINT", "%zz", "%zz"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Key(tt.typ, tt.name), "%s %s", tt.typ, tt.name)
	}
	// Every path of one origin shares a breaker.
	require.Equal(t, Key("HTTP_ENDPOINT", "https://a.example/x"), Key("HTTP_ENDPOINT", "https://A.example:443/y"))
}

type fixture struct {
	set *Set
	reg *prometheus.Registry
}

func setup(t *testing.T, st Settings) fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	st.Metrics = NewMetrics(reg)
	return fixture{set: NewSet(st), reg: reg}
}

func (f fixture) gauge(t *testing.T, label string) float64 {
	t.Helper()
	m := NewMetrics(f.reg) // reuses the registered collectors
	return gaugeOrCounter(t, m.state.WithLabelValues(label))
}

func (f fixture) transitions(t *testing.T, label, to string) float64 {
	t.Helper()
	m := NewMetrics(f.reg)
	return gaugeOrCounter(t, m.transitions.WithLabelValues(label, to))
}

func gaugeOrCounter(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

func attempt(t *testing.T, s *Set, key string, o Outcome) {
	t.Helper()
	done, err := s.Allow(key)
	require.NoError(t, err)
	done(o)
}

// halfOpenSet returns a fixture whose breaker for key has failed once (Failures:
// 1) and waited out openTimeout: it is half-open, its probe not yet taken. Call
// it inside synctest.Test, whose fake clock the wait runs on.
func halfOpenSet(t *testing.T, key string, openTimeout time.Duration) fixture {
	t.Helper()
	f := setup(t, Settings{Failures: 1, OpenTimeout: openTimeout})
	attempt(t, f.set, key, Failure)
	require.Equal(t, gobreaker.StateOpen, f.set.State(key))
	time.Sleep(openTimeout + time.Millisecond) // fake clock
	require.Equal(t, gobreaker.StateHalfOpen, f.set.State(key))
	return f
}

// The open timeout runs on synctest's fake clock (gobreaker reads time.Now), so
// the test waits exactly as long as the breaker and cannot flake.
func TestOpensAfterFailuresThenProbes(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const key = "https://inbox.example:443"
		const openTimeout = 50 * time.Millisecond
		f := setup(t, Settings{Failures: 3, OpenTimeout: openTimeout})
		s := f.set

		attempt(t, s, key, Failure)
		attempt(t, s, key, Failure)
		require.Equal(t, gobreaker.StateClosed, s.State(key))
		attempt(t, s, key, Failure)
		require.Equal(t, gobreaker.StateOpen, s.State(key))
		require.Equal(t, float64(gobreaker.StateOpen), f.gauge(t, LabelHTTP))
		require.Equal(t, float64(1), f.transitions(t, LabelHTTP, "open"))

		_, err := s.Allow(key)
		require.ErrorIs(t, err, ErrOpen)
		require.ErrorIs(t, err, gobreaker.ErrOpenState)
		require.Equal(t, openTimeout, s.OpenFor(key), "no time has passed on the fake clock")

		// Just before OpenTimeout: still open, and OpenFor counts down.
		time.Sleep(openTimeout - time.Millisecond)
		_, err = s.Allow(key)
		require.ErrorIs(t, err, gobreaker.ErrOpenState)
		require.Equal(t, time.Millisecond, s.OpenFor(key))

		// After OpenTimeout: half-open, exactly one probe at a time.
		time.Sleep(2 * time.Millisecond)
		probe, err := s.Allow(key)
		require.NoError(t, err, "the probe is let through once OpenTimeout has passed")
		require.Equal(t, gobreaker.StateHalfOpen, s.State(key))
		_, err = s.Allow(key)
		require.ErrorIs(t, err, ErrOpen, "second probe while one is in flight")
		require.ErrorIs(t, err, gobreaker.ErrTooManyRequests)
		require.Equal(t, s.st.OpenTimeout, s.OpenFor(key))

		probe(Success)
		require.Equal(t, gobreaker.StateClosed, s.State(key))
		require.Equal(t, float64(gobreaker.StateClosed), f.gauge(t, LabelHTTP))
		require.Equal(t, float64(1), f.transitions(t, LabelHTTP, "half-open"))
		require.Equal(t, float64(1), f.transitions(t, LabelHTTP, "closed"))
	})
}

func TestOpenFor(t *testing.T) {
	t.Parallel()
	const key = "nats:agents.wait"
	s := setup(t, Settings{Failures: 1, OpenTimeout: time.Hour}).set
	require.Zero(t, s.OpenFor(key), "an unknown key need not wait")
	attempt(t, s, key, Failure)
	wait := s.OpenFor(key)
	require.Greater(t, wait, time.Duration(0))
	require.LessOrEqual(t, wait, time.Hour)
}

func TestFailedProbeReopens(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const key = "nats:agents.a"
		const openTimeout = 30 * time.Millisecond
		f := halfOpenSet(t, key, openTimeout)
		s := f.set
		attempt(t, s, key, Failure)
		require.Equal(t, gobreaker.StateOpen, s.State(key))
		require.Equal(t, openTimeout, s.OpenFor(key), "a failed probe restarts the full timeout")
		_, err := s.Allow(key)
		require.ErrorIs(t, err, ErrOpen)
		require.Equal(t, float64(2), f.transitions(t, LabelNATS, "open"))
		require.Equal(t, float64(gobreaker.StateOpen), f.gauge(t, LabelNATS))
		require.Equal(t, float64(gobreaker.StateClosed), f.gauge(t, LabelHTTP), "types are separate")
	})
}

// A breaker opens after Failures consecutive failures: a success resets the
// streak, an ignored outcome neither counts nor resets it.
func TestStreak(t *testing.T) {
	t.Parallel()
	const key = "nats:agents.b"
	F, S, I := Failure, Success, Ignore
	tests := []struct {
		name     string
		failures uint32
		outcomes []Outcome
		want     gobreaker.State
	}{
		{"a success resets the streak", 2, slices.Repeat([]Outcome{F, S}, 10), gobreaker.StateClosed},
		{"ignored outcomes do not count", 3, slices.Repeat([]Outcome{I}, 10), gobreaker.StateClosed},
		{"two failures and an ignored outcome are below three", 3, []Outcome{F, F, I}, gobreaker.StateClosed},
		{"the streak survives an ignored outcome", 3, []Outcome{F, F, I, F}, gobreaker.StateOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, Settings{Failures: tt.failures, OpenTimeout: time.Hour}).set
			for _, o := range tt.outcomes {
				attempt(t, s, key, o)
			}
			require.Equal(t, tt.want, s.State(key))
		})
	}
}

func TestIgnoredProbeFreesTheSlot(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const key = "nats:agents.d"
		s := halfOpenSet(t, key, 20*time.Millisecond).set
		attempt(t, s, key, Ignore) // a cancelled probe
		require.Equal(t, gobreaker.StateHalfOpen, s.State(key))
		done, err := s.Allow(key)
		require.NoError(t, err, "the ignored probe must not hold the half-open slot")
		done(Success)
		require.Equal(t, gobreaker.StateClosed, s.State(key))
	})
}

func TestDoneTwiceCountsOnce(t *testing.T) {
	t.Parallel()
	const key = "nats:agents.e"
	s := setup(t, Settings{Failures: 2, OpenTimeout: time.Hour}).set
	done, err := s.Allow(key)
	require.NoError(t, err)
	done(Failure)
	done(Failure)
	require.Equal(t, gobreaker.StateClosed, s.State(key))
}

func TestIdleBreakersAreEvicted(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	advance := func(d time.Duration) { now.Add(int64(d)) }
	f := setup(t, Settings{Failures: 1, OpenTimeout: time.Hour, IdleTimeout: time.Minute, Now: clock})
	s := f.set
	require.Equal(t, 2*time.Hour, s.st.IdleTimeout, "never below 2×OpenTimeout")

	attempt(t, s, "nats:idle", Failure) // open, then forgotten
	held, err := s.Allow("nats:busy")   // in flight across the sweep
	require.NoError(t, err)
	require.Equal(t, float64(gobreaker.StateOpen), f.gauge(t, LabelNATS))
	require.Equal(t, 2, s.Len())

	advance(3 * time.Hour)
	attempt(t, s, "nats:new", Success) // Allow sweeps
	require.Equal(t, 2, s.Len(), "the idle breaker is gone, the busy one stays")
	require.Equal(t, gobreaker.StateClosed, s.State("nats:idle"))
	require.Equal(t, float64(gobreaker.StateClosed), f.gauge(t, LabelNATS), "the evicted open breaker no longer counts")
	held(Success)

	advance(3 * time.Hour)
	attempt(t, s, "nats:other", Success)
	require.Equal(t, 1, s.Len())
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s := setup(t, Settings{Failures: 3, OpenTimeout: time.Millisecond, IdleTimeout: time.Millisecond}).set
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				key := Key("HTTP_ENDPOINT", "http://h"+string(rune('a'+(g+i)%5))+".example/")
				done, err := s.Allow(key)
				if err != nil {
					continue
				}
				done(Outcome(i % 3))
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, s.Len(), 5)
}

func BenchmarkAllow(b *testing.B) {
	s := NewSet(Settings{Failures: 5, OpenTimeout: time.Second})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			done, err := s.Allow("nats:agents.bench")
			if err == nil {
				done(Success)
			}
		}
	})
}
