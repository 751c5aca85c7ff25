package router_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/router"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

// TestStartKeepsOperatorsStream: DESIGN §7 — the router never lowers an existing
// stream's replicas or limits (it used to scale an R3 stream to R1 at every start),
// and it adds a missing contract subject.
func TestStartKeepsOperatorsStream(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	_, js := cl.Connect(t)
	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: stream.Name, Subjects: []string{stream.Subject}, Replicas: 3, MaxAge: time.Hour,
	})
	require.NoError(t, err)
	cfg, err := config.LoadRouter(config.FromMap(map[string]string{
		"NATS_URL": cl.URL, "DATABASE_URL": pgtest.NewURL(t), "ROUTER_ADDR": "127.0.0.1:0",
		"CAMS_API_URL": "http://127.0.0.1:1", "SHUTDOWN_TIMEOUT": "5s",
	}))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- router.Run(ctx, cfg, router.Options{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Ready: ready})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("router did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("router did not start within 30s")
	}
	cancel()
	require.NoError(t, <-done)

	s, err := js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	c := s.CachedInfo().Config
	require.Equal(t, 3, c.Replicas)
	require.Equal(t, time.Hour, c.MaxAge)
	require.ElementsMatch(t, []string{stream.Subject, stream.SubjectAll}, c.Subjects)
}
