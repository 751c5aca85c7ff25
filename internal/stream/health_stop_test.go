package stream_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/service"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/stream/streamtest"
)

// The router runs the stream-health loop as a service.Go part: with NATS gone,
// Stop still returns within its context (DESIGN §8.4), and TestMain's goleak
// checks the loop ended.
func TestHealthLoopStopBoundedWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	srv, js, _ := streamtest.Start(t)
	h := stream.NewHealth(prometheus.NewRegistry())
	loop := service.Go("stream health", func(ctx context.Context) {
		h.Run(ctx, js, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	})
	require.NoError(t, loop.Start(t.Context()))
	<-loop.Started()
	srv.Shutdown()
	srv.WaitForShutdown()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, loop.Stop(ctx))
	require.Less(t, time.Since(start), 2*time.Second)
	<-loop.Stopped()
}
