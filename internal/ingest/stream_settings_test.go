package ingest_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/ingest"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
	"github.com/msgrouter/msgrouter/internal/testutil/runtest"
)

// startStop runs ingest with env until it is ready, then shuts it down.
func startStop(t *testing.T, env map[string]string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, done := runReady(ctx, t, loadConfig(t, env))
	cancel()
	require.NoError(t, <-done)
}

// runReady starts ingest.Run with cfg on a goroutine and returns once it is ready,
// with the address it listens on and the channel Run's result arrives on. Run
// stops when ctx ends, at the latest when t ends (t waits for it).
func runReady(ctx context.Context, t *testing.T, cfg config.Ingest) (net.Addr, <-chan error) {
	t.Helper()
	return runtest.Start(ctx, t, 60*time.Second, func(ctx context.Context, ready chan<- net.Addr) error {
		return ingest.Run(ctx, cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry(),
			ingest.WithTracerProvider(noop.NewTracerProvider()), ingest.OnReady(func(a net.Addr) { ready <- a }))
	})
}

// TestStartKeepsOperatorsStream: DESIGN §7 — ingest never lowers an existing stream's
// replicas or limits, and STREAM_REPLICAS=3 creates an R3 stream.
func TestStartKeepsOperatorsStream(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	_, js := cl.Connect(t)
	env := map[string]string{"NATS_URL": cl.URL, "INGEST_ADDR": "127.0.0.1:0", "SHUTDOWN_TIMEOUT": "5s"}

	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: stream.Name, Subjects: []string{stream.Subject, stream.SubjectAll}, Replicas: 3, MaxAge: time.Hour,
	})
	require.NoError(t, err)
	startStop(t, env) // STREAM_REPLICAS unset: 1
	s, err := js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	require.Equal(t, 3, s.CachedInfo().Config.Replicas)
	require.Equal(t, time.Hour, s.CachedInfo().Config.MaxAge)

	require.NoError(t, js.DeleteStream(t.Context(), stream.Name))
	env["STREAM_REPLICAS"] = "3"
	env["STREAM_MAX_BYTES"] = "1048576"
	startStop(t, env)
	s, err = js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	require.Equal(t, 3, s.CachedInfo().Config.Replicas)
	require.Equal(t, int64(1<<20), s.CachedInfo().Config.MaxBytes)
	require.Equal(t, 168*time.Hour, s.CachedInfo().Config.MaxAge)
}
