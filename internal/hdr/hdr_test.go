package hdr

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func exact(sorted []int64, q float64) int64 {
	rank := max(int(math.Ceil(q*float64(len(sorted)))), 1)
	return sorted[rank-1]
}

func requireWithin1Percent(t *testing.T, want, got int64, what string) {
	t.Helper()
	diff := math.Abs(float64(got - want))
	require.LessOrEqualf(t, diff, 0.01*float64(want)+0.5, "%s: got %d, want %d", what, got, want)
}

func TestQuantilesWithinOnePercent(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() int64{
		// Latency-like: log-normal around 2ms with a long tail, in nanoseconds.
		"lognormal": func() int64 { return int64(math.Exp(rng.NormFloat64()*1.2 + math.Log(2e6))) },
		"uniform":   func() int64 { return rng.Int64N(10_000_000) },
		"small":     func() int64 { return rng.Int64N(300) },
	}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			h := New()
			vals := make([]int64, 200_000)
			for i := range vals {
				vals[i] = gen()
				h.Record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999} {
				requireWithin1Percent(t, exact(vals, q), h.Quantile(q), name)
			}
			require.Equal(t, vals[len(vals)-1], h.Max())
			require.Equal(t, vals[0], h.Min())
			require.Equal(t, vals[len(vals)-1], h.Quantile(1))
			require.Equal(t, uint64(len(vals)), h.Count())
		})
	}
}

func TestEveryBucketBoundIsTight(t *testing.T) {
	t.Parallel()
	// Every value maps into a bucket that contains it and is at most 1/128 of it wide.
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 1e6, 123456789, 1 << 40, math.MaxInt64} {
		low, width := bounds(index(v))
		require.LessOrEqual(t, low, v)
		require.Greater(t, low+width-1, v-1, "value %d above bucket [%d,+%d)", v, low, width)
		if v >= subCount {
			require.LessOrEqual(t, float64(width), float64(v)/subCount)
		}
	}
	require.Equal(t, buckets-1, index(math.MaxInt64))
}

func TestMergeEqualsRecordingAll(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	a, b, all := New(), New(), New()
	for i := range 50_000 {
		v := rng.Int64N(1e9)
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	a.Merge(b)
	a.Merge(nil)
	a.Merge(New())
	require.Equal(t, all.Count(), a.Count())
	require.Equal(t, all.Max(), a.Max())
	require.Equal(t, all.Min(), a.Min())
	require.InDelta(t, all.Mean(), a.Mean(), 1e-3)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		require.Equal(t, all.Quantile(q), a.Quantile(q))
	}

	empty := New()
	empty.Merge(b)
	require.Equal(t, b.Min(), empty.Min())
}

func TestEmptyAndEdges(t *testing.T) {
	t.Parallel()
	h := New()
	require.Zero(t, h.Quantile(0.5))
	require.Zero(t, h.Max())
	require.Zero(t, h.Mean())
	h.Record(-5)
	require.Zero(t, h.Max())
	h.RecordN(1000, 3)
	h.RecordN(7, 0)
	require.Equal(t, uint64(4), h.Count())
	require.Equal(t, int64(1000), h.Quantile(0.5))
	require.Equal(t, int64(0), h.Quantile(0))
	h.Reset()
	require.Zero(t, h.Count())
}
