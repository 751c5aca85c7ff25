package service_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/msgrouter/msgrouter/internal/service"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var log = slog.New(slog.NewTextHandler(io.Discard, nil))

// recorder is a part that records its Start and Stop calls.
type recorder struct {
	service.Base
	name     string
	calls    *[]string
	mu       *sync.Mutex
	startErr error
}

func (r *recorder) Start(ctx context.Context) error {
	return r.Base.Start(func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		*r.calls = append(*r.calls, "start "+r.name)
		return r.startErr
	})
}

func (r *recorder) Stop(ctx context.Context) error {
	return r.Base.Stop(ctx, func(context.Context) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		*r.calls = append(*r.calls, "stop "+r.name)
		return nil
	})
}

func TestBaseIdempotent(t *testing.T) {
	t.Parallel()
	var calls []string
	var mu sync.Mutex
	r := &recorder{name: "a", calls: &calls, mu: &mu}
	ctx := context.Background()
	require.NoError(t, r.Start(ctx))
	require.NoError(t, r.Start(ctx))
	<-r.Started()
	require.NoError(t, r.Stop(ctx))
	require.NoError(t, r.Stop(ctx))
	<-r.Stopped()
	require.NoError(t, r.Start(ctx), "Start after Stop does nothing")
	require.Equal(t, []string{"start a", "stop a"}, calls)
}

func TestBaseStopBeforeStart(t *testing.T) {
	t.Parallel()
	var calls []string
	var mu sync.Mutex
	r := &recorder{name: "a", calls: &calls, mu: &mu}
	require.NoError(t, r.Stop(context.Background()))
	<-r.Stopped()
	require.NoError(t, r.Start(context.Background()))
	require.Empty(t, calls)
	select {
	case <-r.Started():
		t.Fatal("started after Stop")
	default:
	}
}

func TestGroupStopsInReverseAndOnStartError(t *testing.T) {
	t.Parallel()
	var calls []string
	var mu sync.Mutex
	mk := func(name string, err error) service.Part {
		return service.Part{Name: name, Service: &recorder{name: name, calls: &calls, mu: &mu, startErr: err}}
	}
	boom := errors.New("boom")
	g := service.NewGroup(log)
	err := g.Start(context.Background(), time.Second, mk("a", nil), mk("b", nil), mk("c", boom), mk("d", nil))
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "error starting c")
	require.Equal(t, []string{"start a", "start b", "start c", "stop b", "stop a"}, calls)

	calls = nil
	g = service.NewGroup(log)
	require.NoError(t, g.Start(context.Background(), time.Second, mk("a", nil), service.Part{Name: "nil", Service: (*recorder)(nil)}, mk("b", nil)))
	require.Empty(t, g.Stop(context.Background()))
	require.Equal(t, []string{"start a", "start b", "stop b", "stop a"}, calls)
}

// A loop that ignores its context: Stop returns when its context ends, names the
// part, and wraps the context's error.
func TestLoopStopBoundedByContext(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	l := service.Go("stuck loop", func(context.Context) { <-release })
	require.NoError(t, l.Start(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := l.Stop(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "stuck loop")
	close(release)

	l2 := service.Go("loop", func(ctx context.Context) { <-ctx.Done() })
	require.NoError(t, l2.Start(context.Background()))
	require.NoError(t, l2.Stop(context.Background()))
	<-l2.Stopped()
}

// An HTTP server with a request that never finishes: Stop returns when its
// context ends and closes the connection.
func TestHTTPServerStopBoundedByContext(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	entered := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})}
	before := make(chan struct{})
	s := &service.HTTPServer{Name: "api", Server: srv, Listener: ln, Before: func() { close(before) }}
	require.NoError(t, s.Start(context.Background()))
	client := &http.Client{}
	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		resp, err := client.Get("http://" + ln.Addr().String() + "/")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Stop(ctx), context.DeadlineExceeded)
	<-before
	<-reqDone // Close cut the connection
	client.CloseIdleConnections()
}

// Run stops every part when one fails on its own, and returns the failure.
func TestRunStopsOnFailure(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var calls []string
	var mu sync.Mutex
	first := &recorder{name: "first", calls: &calls, mu: &mu}
	s := &service.HTTPServer{Name: "api", Server: &http.Server{Handler: http.NotFoundHandler()}, Listener: ln}
	err = service.Run(context.Background(), log, time.Second, func() { ln.Close() }, // the listener breaks
		service.Part{Name: "first", Service: first}, service.Part{Name: "api", Service: s})
	require.ErrorContains(t, err, "api failed")
	require.Equal(t, []string{"start first", "stop first"}, calls)
}

func TestRunStopsOnContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	l := service.Go("loop", func(ctx context.Context) { <-ctx.Done() })
	require.NoError(t, service.Run(ctx, log, time.Second, cancel, service.Part{Name: "loop", Service: l}))
	<-l.Stopped()
}
