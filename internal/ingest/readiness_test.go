package ingest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// runIngest starts ingest with env and returns its base URL; it stops with t.
func runIngest(t *testing.T, env map[string]string) string {
	t.Helper()
	addr, _ := runReady(context.Background(), t, loadConfig(t, env))
	return "http://" + addr.String()
}

type readyAnswer struct {
	status  int
	failing string
	message string
}

func getReady(t *testing.T, base string) readyAnswer {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(base + "/health/ready")
	require.NoError(t, err)
	defer resp.Body.Close()
	var b struct{ Failing, Message string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&b))
	return readyAnswer{resp.StatusCode, b.Failing, b.Message}
}

// waitReady polls /health/ready until its status is want and its message contains
// each of msg (deadline 30s).
func waitReady(t *testing.T, base string, want int, msg ...string) readyAnswer {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		a := getReady(t, base)
		ok := a.status == want
		for _, m := range msg {
			ok = ok && strings.Contains(a.message, m)
		}
		if ok {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health/ready stayed %d (%s), want %d", a.status, a.message, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReadyFailsWhenTheStreamCannotStore: issue 9 — with the connection up but the
// stream unable to store (a cluster without quorum), ready answers 503 naming
// JetStream, as every publish does.
func TestReadyFailsWhenTheStreamCannotStore(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	base := runIngest(t, map[string]string{"NATS_URL": cl.URL, "INGEST_ADDR": "127.0.0.1:0", "STREAM_REPLICAS": "3", "SHUTDOWN_TIMEOUT": "5s"})
	waitReady(t, base, http.StatusOK)

	// Two of three nodes gone: the connection moves to the third, the stream has no
	// quorum and no leader.
	cl.Servers[0].Shutdown()
	cl.Servers[1].Shutdown()
	// (While the client reconnects it says "not connected"; then the stream's state.)
	a := waitReady(t, base, http.StatusServiceUnavailable, stream.Name)
	require.Equal(t, "jetstream", a.failing)

	resp, err := (&http.Client{Timeout: 20 * time.Second}).Post(base+"/v1/messages", "application/json", strings.NewReader(exampleBody))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "ready agrees with the publish path")
}

// TestReadyFailsWhenTheStreamIsGone: a deleted stream cannot store either.
func TestReadyFailsWhenTheStreamIsGone(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	base := runIngest(t, map[string]string{"NATS_URL": srv.URL, "INGEST_ADDR": "127.0.0.1:0", "SHUTDOWN_TIMEOUT": "5s"})
	waitReady(t, base, http.StatusOK)
	_, js := srv.Connect(t)
	require.NoError(t, js.DeleteStream(t.Context(), stream.Name))
	a := waitReady(t, base, http.StatusServiceUnavailable)
	require.Equal(t, "jetstream", a.failing)
	require.Contains(t, a.message, "stream ROUTER_MESSAGES does not exist")
}
