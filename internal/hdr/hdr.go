// Package hdr is an HDR-style latency histogram: log-linear buckets (128 linear
// sub-buckets per power of two), so every recorded value lands in a bucket at most
// 1/128 of its size wide and quantiles come back within 0.4% of the exact value
// (bucket midpoints), in constant memory (about 58 KiB whatever the count or range),
// with exact count, min, max and mean, and histograms that merge by adding buckets.
//
// A Histogram is not safe for concurrent use: give each goroutine its own and Merge
// them, or guard one with a mutex.
package hdr

import (
	"math"
	"math/bits"
	"time"
)

const (
	subBits  = 7
	subCount = 1 << subBits // linear sub-buckets per power of two
	// buckets covers every non-negative int64: values below subCount are exact, then
	// one group of subCount buckets per power of two from 2^7 to 2^62.
	buckets = subCount + (63-subBits)*subCount
)

// Histogram counts non-negative int64 values (nanoseconds, typically).
type Histogram struct {
	counts [buckets]uint64
	total  uint64
	sum    float64
	min    int64
	max    int64
}

// New returns an empty histogram.
func New() *Histogram { return &Histogram{} }

func index(v int64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - 1 // v in [2^e, 2^(e+1))
	shift := e - subBits
	sub := int(v>>shift) - subCount
	return subCount + shift*subCount + sub
}

// bounds returns the lowest value of bucket i and its width.
func bounds(i int) (low, width int64) {
	if i < subCount {
		return int64(i), 1
	}
	shift := (i - subCount) / subCount
	sub := (i - subCount) % subCount
	return int64(subCount+sub) << shift, int64(1) << shift
}

// Record adds one value; negative values count as 0.
func (h *Histogram) Record(v int64) { h.RecordN(v, 1) }

// RecordDuration adds one duration.
func (h *Histogram) RecordDuration(d time.Duration) { h.RecordN(int64(d), 1) }

// RecordN adds n occurrences of v.
func (h *Histogram) RecordN(v int64, n uint64) {
	if n == 0 {
		return
	}
	v = max(v, 0)
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.counts[index(v)] += n
	h.total += n
	h.sum += float64(v) * float64(n)
}

// Count is how many values were recorded.
func (h *Histogram) Count() uint64 { return h.total }

// Min is the smallest recorded value, exact; 0 when empty.
func (h *Histogram) Min() int64 { return h.min }

// Max is the largest recorded value, exact; 0 when empty.
func (h *Histogram) Max() int64 { return h.max }

// Mean is the exact arithmetic mean; 0 when empty.
func (h *Histogram) Mean() float64 {
	if h.total == 0 {
		return 0
	}
	return h.sum / float64(h.total)
}

// Quantile returns the value at quantile q (0..1): the midpoint of the bucket holding
// the ceil(q·count)-th smallest value, clamped to [Min, Max]. Quantile(1) is Max and
// Quantile(0) is Min, exactly. 0 when empty.
func (h *Histogram) Quantile(q float64) int64 {
	if h.total == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i]
		if seen >= rank {
			low, width := bounds(i)
			v := low + (width-1)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.total == 0 {
		return
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }
