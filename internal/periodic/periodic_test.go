package periodic_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/msgrouter/msgrouter/internal/periodic"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// run starts fn on a goroutine and returns a channel closed when it returns.
func run(fn func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	return done
}

func receive[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// A wake calls f before its delay has passed; the delay f returns is the wait
// before the next call (zero: at once); cancelling ends the loop.
func TestLoopWakeAndNextDelay(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	wake := make(chan struct{}, 1)
	calls := make(chan int)
	n := 0
	done := run(func() {
		periodic.Loop(ctx, time.Hour, wake, func(ctx context.Context) time.Duration {
			n++
			select {
			case calls <- n:
			case <-ctx.Done():
			}
			if n == 1 {
				return 0
			}
			return time.Hour // only a wake ends it early
		})
	})
	select {
	case <-calls:
		t.Fatal("f was called before its first delay or a wake")
	default:
	}
	wake <- struct{}{}
	require.Equal(t, 1, receive(t, calls, "the call a wake asks for"))
	require.Equal(t, 2, receive(t, calls, "the call after a zero delay"))
	wake <- struct{}{}
	require.Equal(t, 3, receive(t, calls, "the call a wake asks for during an hour's delay"))
	cancel()
	receive(t, done, "Loop to return after cancel")
}

// Every calls f again and again with the context it was given, never two calls at
// once, and returns when the context ends.
func TestEvery(t *testing.T) {
	t.Parallel()
	type key struct{}
	ctx, cancel := context.WithCancel(context.WithValue(t.Context(), key{}, "v"))
	calls := make(chan struct{})
	running := false
	done := run(func() {
		periodic.Every(ctx, 0, time.Millisecond, func(ctx context.Context) {
			require.False(t, running, "calls overlap")
			running = true
			defer func() { running = false }()
			require.Equal(t, "v", ctx.Value(key{}))
			select {
			case calls <- struct{}{}:
			case <-ctx.Done():
			}
		})
	})
	for i := range 3 {
		receive(t, calls, fmt.Sprintf("call %d", i+1))
	}
	cancel()
	receive(t, done, "Every to return after cancel")
}
