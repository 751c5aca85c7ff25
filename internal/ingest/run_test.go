package ingest_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/ingest"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/telemetry"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
	"github.com/msgrouter/msgrouter/internal/testutil/runtest"
)

func loadConfig(t *testing.T, env map[string]string) config.Ingest {
	t.Helper()
	cfg, err := config.LoadIngest(config.FromMap(env))
	require.NoError(t, err)
	return cfg
}

// running is ingest.Run serving on a free port against its own in-process
// JetStream.
type running struct {
	srv    *natstest.Server
	addr   net.Addr
	cancel context.CancelFunc // ends Run's context
	done   <-chan error       // Run's result
}

// runOnNATS starts a JetStream server and ingest.Run against it with
// SHUTDOWN_TIMEOUT shutdownTimeout (a duration such as "5s"), and returns once
// Run is ready. Run stops when cancel is called, at the latest when t ends.
func runOnNATS(t *testing.T, shutdownTimeout string) running {
	t.Helper()
	srv := natstest.Start(t)
	cfg := loadConfig(t, map[string]string{"NATS_URL": srv.URL, "INGEST_ADDR": "127.0.0.1:0", "SHUTDOWN_TIMEOUT": shutdownTimeout})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr, done := runReady(ctx, t, cfg)
	return running{srv: srv, addr: addr, cancel: cancel, done: done}
}

func TestRunServesAndShutsDownGracefully(t *testing.T) {
	t.Parallel()
	r := runOnNATS(t, "5s")
	base := "http://" + r.addr.String()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Post(base+"/v1/messages", "application/json", strings.NewReader(exampleBody))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode, string(b))

	resp, err = client.Get(base + "/health/ready")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err, "a graceful shutdown returns nil")
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	_, err = client.Get(base + "/health")
	require.Error(t, err, "the listener is closed")

	// The stream Run created holds the message.
	_, js := r.srv.Connect(t)
	s, err := js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs)
	require.Equal(t, stream.Config().Subjects, info.Config.Subjects)
}

func TestRunFailsClearlyWithoutNATS(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now

	cfg := loadConfig(t, map[string]string{"NATS_URL": "nats://" + addr, "INGEST_ADDR": "127.0.0.1:0"})
	start := time.Now()
	err = ingest.Run(t.Context(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry(),
		ingest.WithTracerProvider(noop.NewTracerProvider()))
	require.ErrorContains(t, err, "error connecting to NATS at nats://"+addr)
	require.Less(t, time.Since(start), 30*time.Second)
}

func TestRunRejectsBadKeys(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t, map[string]string{"INGEST_API_KEYS": "name:"})
	err := ingest.Run(t.Context(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.ErrorContains(t, err, "INGEST_API_KEYS")
}

// TestPropagationWithoutExporter uses the provider telemetry.Setup returns when no
// exporter is configured: trace context still reaches the stream.
func TestPropagationWithoutExporter(t *testing.T) {
	t.Parallel()
	tp, shutdown, err := telemetry.Setup(t.Context(), "ingest-test", "test")
	require.NoError(t, err)
	defer func() { require.NoError(t, shutdown(context.Background())) }()
	f := setup(t, func(c *ingest.Config) { c.TracerProvider = tp })

	const caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	id := accepted(t, f.post(exampleBody, "traceparent", caller))
	msgs := f.stored()
	require.Len(t, msgs, 1)
	require.Equal(t, id, msgs[0].Header.Get(jetstream.MsgIDHeader))
	got := msgs[0].Header.Get("traceparent")
	require.Regexp(t, `^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$`, got)
	require.NotContains(t, got, "b7ad6b7169203331", "the ingest span, not the caller's, is the parent")
}

// With NATS gone (the server shut down under a running ingest), Run must still
// return within SHUTDOWN_TIMEOUT plus a little once its context ends (DESIGN
// §8.4): the connection's drain cannot hang the stop. TestMain's goleak checks
// nothing was left running.
func TestRunStopBoundedWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	r := runOnNATS(t, "1s")
	r.srv.Shutdown()
	r.srv.WaitForShutdown()

	r.cancel()
	runtest.Returns(t, r.done, 4*time.Second, "bounded by SHUTDOWN_TIMEOUT (1 s) plus a little")
}
