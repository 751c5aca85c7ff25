package backoff

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func fixed(r float64) func() float64 { return func() float64 { return r } }

func TestDelay(t *testing.T) {
	t.Parallel()
	p := Policy{Initial: time.Second, Max: 5 * time.Minute}
	tests := []struct {
		name    string
		attempt int
		r       float64
		want    time.Duration
	}{
		{"first retry, top of range", 1, 0.999999999, time.Second - 1},
		{"first retry, bottom", 1, 0, 0},
		{"first retry, middle", 1, 0.5, 500 * time.Millisecond},
		{"second retry doubles the ceiling", 2, 0.5, time.Second},
		{"third", 3, 0.5, 2 * time.Second},
		{"capped at Max", 20, 0.5, 150 * time.Second},
		{"huge attempt does not overflow", 1 << 30, 0.5, 150 * time.Second},
		{"max int attempt", math.MaxInt, 0.999, time.Duration(0.999 * float64(5*time.Minute))},
		{"attempt 0 counts as 1", 0, 0.5, 500 * time.Millisecond},
		{"negative attempt counts as 1", -3, 0.5, 500 * time.Millisecond},
		{"bad random source clamps to range", 1, 7, time.Second},
		{"negative random source is 0", 1, -1, 0},
		{"NaN random source is 0", 1, math.NaN(), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, p.Delay(tt.attempt, fixed(tt.r)))
		})
	}
}

func TestDelayStaysInRange(t *testing.T) {
	t.Parallel()
	policies := []Policy{
		{Initial: time.Second, Max: 5 * time.Minute},
		{Initial: time.Millisecond, Max: time.Millisecond},
		{Initial: 3 * time.Hour, Max: time.Second}, // Initial above Max: Max wins
		{Initial: time.Second},                     // no Max
		{Initial: maxDuration, Max: maxDuration},
	}
	for _, p := range policies {
		for attempt := -1; attempt < 200; attempt++ {
			for _, r := range []float64{0, 0.25, 0.5, 0.999999999999} {
				d := p.Delay(attempt, fixed(r))
				require.GreaterOrEqual(t, d, time.Duration(0), "policy %+v attempt %d", p, attempt)
				require.LessOrEqual(t, d, p.Ceiling(attempt))
				if p.Max > 0 {
					require.LessOrEqual(t, d, p.Max)
				}
			}
		}
	}
}

func TestCeilingIsMonotonic(t *testing.T) {
	t.Parallel()
	p := Policy{Initial: 7 * time.Millisecond}
	prev := time.Duration(0)
	for attempt := 1; attempt < 100; attempt++ {
		c := p.Ceiling(attempt)
		require.GreaterOrEqual(t, c, prev)
		prev = c
	}
	require.Equal(t, maxDuration, prev)
}

func TestZeroPolicyNeverWaits(t *testing.T) {
	t.Parallel()
	require.Zero(t, Policy{}.Delay(5, nil))
	require.Zero(t, Policy{Initial: -time.Second, Max: time.Second}.Delay(5, nil))
}

func TestDelayDefaultRandom(t *testing.T) {
	t.Parallel()
	p := Policy{Initial: time.Second, Max: time.Minute}
	for range 1000 {
		d := p.Delay(3, nil)
		require.GreaterOrEqual(t, d, time.Duration(0))
		require.LessOrEqual(t, d, 4*time.Second)
	}
}

func TestClamp(t *testing.T) {
	t.Parallel()
	p := Policy{Initial: time.Second, Max: time.Minute}
	require.Equal(t, time.Minute, p.Clamp(time.Hour))
	require.Equal(t, 5*time.Second, p.Clamp(5*time.Second))
	require.Zero(t, p.Clamp(-time.Second))
	require.Equal(t, time.Hour, Policy{}.Clamp(time.Hour))
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 15, 4, 5, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"120", 120 * time.Second, true},
		{"0", 0, true},
		{" 7 ", 7 * time.Second, true},
		{"00012", 12 * time.Second, true},
		{"99999999999999999999999", maxDuration, true},
		{"Sat, 28 Nov 2026 15:04:35 GMT", 30 * time.Second, true}, // IMF-fixdate
		{"Saturday, 28-Nov-26 15:05:05 GMT", time.Minute, true},   // RFC 850
		{"Sat Nov 28 15:04:15 2026", 10 * time.Second, true},      // asctime
		{"Sat, 28 Nov 2026 15:00:00 GMT", 0, true},                // past: now
		{"Mon, 01 Jan 1990 00:00:00 GMT", 0, true},                // far past
		{"-5", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"1e3", 0, false},
		{"", 0, false},
		{"   ", 0, false},
		{"soon", 0, false},
		{"2026-11-28T15:04:35Z", 0, false}, // RFC 3339 is not an HTTP-date
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, ok := ParseRetryAfter(tt.in, now)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "0", "Sat, 28 Nov 2026 15:04:35 GMT", "-1", "1.5", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 28, 15, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := ParseRetryAfter(v, now)
		if !ok {
			if d != 0 {
				t.Fatalf("%q: not ok but d = %v", v, d)
			}
			return
		}
		if d < 0 {
			t.Fatalf("%q: negative delay %v", v, d)
		}
		// Whole seconds round-trip: a value we print parses back to itself.
		if d < maxDuration && d%time.Second == 0 {
			s := strconv.FormatInt(int64(d/time.Second), 10)
			back, ok := ParseRetryAfter(s, now)
			if !ok || back != d {
				t.Fatalf("%q -> %v -> %q -> %v, %v", v, d, s, back, ok)
			}
		}
	})
}

func BenchmarkDelay(b *testing.B) {
	p := Policy{Initial: time.Second, Max: 5 * time.Minute}
	r := fixed(0.5)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = p.Delay(i%40+1, r)
	}
}
