package ratelimit_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/ratelimit"
	"github.com/msgrouter/msgrouter/internal/testutil/fakeclock"
)

// clock is a hand-moved time source.
func newClock() *fakeclock.Clock { return fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

func TestBurstThenRefill(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := ratelimit.New(2, 3, 10, ratelimit.WithClock(c.Now)) // 2/s, burst 3

	for i := range 3 {
		ok, _ := l.Reserve("a")
		require.True(t, ok, "event %d of the burst", i)
	}
	ok, after := l.Reserve("a")
	require.False(t, ok)
	require.Equal(t, 500*time.Millisecond, after, "one token every 1/rate")

	// A refused event costs nothing: asking again at once gives the same wait.
	ok, after = l.Reserve("a")
	require.False(t, ok)
	require.Equal(t, 500*time.Millisecond, after)

	c.Advance(after)
	ok, _ = l.Reserve("a")
	require.True(t, ok, "allowed again once the wait has passed")
	ok, _ = l.Reserve("a")
	require.False(t, ok)
}

func TestKeysAreIndependent(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := ratelimit.New(1, 1, 10, ratelimit.WithClock(c.Now))
	ok, _ := l.Reserve("a")
	require.True(t, ok)
	ok, _ = l.Reserve("a")
	require.False(t, ok)
	ok, _ = l.Reserve("b")
	require.True(t, ok, "b has its own bucket")
}

func TestUnlimited(t *testing.T) {
	t.Parallel()
	for _, l := range []*ratelimit.Keyed{nil, ratelimit.New(0, 0, 0)} {
		require.True(t, l.Unlimited())
		for range 1000 {
			ok, after := l.Reserve("a")
			require.True(t, ok)
			require.Zero(t, after)
		}
		require.Zero(t, l.Len(), "an unlimited limiter remembers nothing")
	}
}

func TestBoundedKeys(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := ratelimit.New(1, 1, 100, ratelimit.WithClock(c.Now))
	for i := range 10_000 {
		ok, _ := l.Reserve(fmt.Sprintf("ip-%d", i))
		require.True(t, ok)
		require.LessOrEqual(t, l.Len(), 100)
	}
	require.Equal(t, 100, l.Len())

	// The most recently used keys are the ones kept.
	ok, _ := l.Reserve("ip-9999")
	require.False(t, ok, "a recent key keeps its empty bucket")
}

func TestIdleKeysAreForgotten(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := ratelimit.New(10, 5, 1000, ratelimit.WithClock(c.Now)) // refills in 500ms
	for i := range 50 {
		l.Reserve(fmt.Sprintf("k%d", i))
	}
	require.Equal(t, 50, l.Len())

	c.Advance(501 * time.Millisecond)
	// Each call drops up to two idle keys; traffic from one live key is enough to
	// empty the map of the others.
	for range 30 {
		l.Reserve("live")
	}
	require.Equal(t, 1, l.Len(), "only the live key is left")
}

func TestRetryAfterGrowsWithDebt(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := ratelimit.New(0.5, 1, 10, ratelimit.WithClock(c.Now)) // one event every 2s
	ok, _ := l.Reserve("a")
	require.True(t, ok)
	c.Advance(500 * time.Millisecond)
	ok, after := l.Reserve("a")
	require.False(t, ok)
	require.Equal(t, 1500*time.Millisecond, after)
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := ratelimit.New(1, 100, 50, ratelimit.WithClock(c.Now))
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				if ok, _ := l.Reserve("shared"); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
				l.Reserve(fmt.Sprintf("g%d-%d", g, i%200))
			}
		})
	}
	wg.Wait()
	require.Equal(t, 100, allowed, "exactly the burst gets through while the clock stands still")
	require.LessOrEqual(t, l.Len(), 50)
}

func BenchmarkReserve(b *testing.B) {
	b.Run("one_key", func(b *testing.B) {
		l := ratelimit.New(1e9, 1e9, 0)
		b.ReportAllocs()
		for b.Loop() {
			l.Reserve("sender")
		}
	})
	b.Run("parallel_64_keys", func(b *testing.B) {
		l := ratelimit.New(1e9, 1e9, 0)
		keys := make([]string, 64)
		for i := range keys {
			keys[i] = fmt.Sprintf("sender-%d", i)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				l.Reserve(keys[i%len(keys)])
				i++
			}
		})
	})
}

// A batch of n counts n (DESIGN §2): it is refused whole when the bucket cannot pay
// it, and one larger than the burst leaves debt that later events wait out.
func TestReserveN(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := ratelimit.New(10, 20, 10, ratelimit.WithClock(c.Now)) // 10/s, burst 20

	ok, _ := l.ReserveN("a", 15)
	require.True(t, ok)
	ok, after := l.ReserveN("a", 10)
	require.False(t, ok, "5 tokens left, 10 asked")
	require.Equal(t, 500*time.Millisecond, after)
	ok, _ = l.ReserveN("a", 5)
	require.True(t, ok, "a refused batch took nothing")

	c.Advance(2 * time.Second) // full again
	ok, _ = l.ReserveN("a", 50)
	require.True(t, ok, "a batch over the burst passes from a full bucket")
	ok, after = l.Reserve("a")
	require.False(t, ok)
	require.Equal(t, 3100*time.Millisecond, after, "30 tokens of debt plus one at 10/s")
	c.Advance(3100 * time.Millisecond)
	ok, _ = l.Reserve("a")
	require.True(t, ok, "the debt is paid")
}
