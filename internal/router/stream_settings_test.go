package router_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/router"
	"github.com/msgrouter/msgrouter/internal/router/routertest"
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
	_, done := routertest.Start(ctx, t, cfg, router.Options{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}, 60*time.Second)
	cancel()
	require.NoError(t, <-done)

	s, err := js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	c := s.CachedInfo().Config
	require.Equal(t, 3, c.Replicas)
	require.Equal(t, time.Hour, c.MaxAge)
	require.ElementsMatch(t, []string{stream.Subject, stream.SubjectAll}, c.Subjects)
}

// TestReadyFailsWhenTheStreamCannotStore: issue 9 — the router's /health/ready
// answers 503 naming the failing dependency when the stream has no quorum, not only
// when the NATS connection is down.
func TestReadyFailsWhenTheStreamCannotStore(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	cfg, err := config.LoadRouter(config.FromMap(map[string]string{
		"NATS_URL": cl.URL, "DATABASE_URL": pgtest.NewURL(t), "ROUTER_ADDR": "127.0.0.1:0",
		"CAMS_API_URL": "http://127.0.0.1:1", "SHUTDOWN_TIMEOUT": "5s", "STREAM_REPLICAS": "3",
	}))
	require.NoError(t, err)
	addr, _ := routertest.Start(t.Context(), t, cfg, router.Options{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}, 60*time.Second)
	base := "http://" + addr
	get := func() (int, string, string) {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/health/ready")
		require.NoError(t, err)
		defer resp.Body.Close()
		var b struct{ Failing, Message string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&b))
		return resp.StatusCode, b.Failing, b.Message
	}
	code, _, msg := get()
	require.Equal(t, http.StatusOK, code, msg)

	cl.Servers[0].Shutdown()
	cl.Servers[1].Shutdown()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, failing, msg := get()
		if code == http.StatusServiceUnavailable && strings.Contains(msg, stream.Name) {
			require.Equal(t, "nats", failing)
			break
		}
		require.True(t, time.Now().Before(deadline), "ready stayed %d (%s)", code, msg)
		time.Sleep(50 * time.Millisecond)
	}
}
