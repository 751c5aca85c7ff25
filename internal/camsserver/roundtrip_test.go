package camsserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/msgrouter/msgrouter/internal/apiclient"
	"github.com/msgrouter/msgrouter/internal/cams"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/testutil/logtest"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestClientServerRoundTrip drives the real server (real Postgres) with the API
// client routerctl uses for its admin calls and the router's lookup client: what
// the CLI writes, the router reads back unchanged.
func TestClientServerRoundTrip(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "ops:s3cret")
	admin := apiclient.New(10*time.Second, 2)
	admin.CAMSURL, admin.APIKey = b.srv.URL, "s3cret"
	c, err := cams.NewClient(cams.ClientConfig{BaseURL: b.srv.URL, APIKey: "s3cret", CacheTTL: time.Minute, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()

	for i, addr := range oddAddresses {
		m, err := admin.CreateAgent(ctx, &apiclient.Agent{AIAgentAddress: addr, InboxDestinationType: mapping.TypeHTTPEndpoint, InboxName: fmt.Sprintf("https://agents.example.com/%d", i)})
		require.NoError(t, err, addr)
		require.Equal(t, mapping.StatusActive, m.Status)
		require.Equal(t, "ops", m.UpdatedBy)
	}
	_, err = admin.CreateAgent(ctx, &apiclient.Agent{AIAgentAddress: oddAddresses[0], InboxDestinationType: mapping.TypeNATSSubject, InboxName: "x"})
	var apiErr *apiclient.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, apiclient.Error{Status: 409, Code: "CONFLICT", Message: apiErr.Message}, *apiErr)

	_, err = admin.CreateAgent(ctx, &apiclient.Agent{AIAgentAddress: "bad subject", InboxDestinationType: mapping.TypeNATSSubject, InboxName: "x"})
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, 400, apiErr.Status)
	require.Equal(t, "INVALID_REQUEST", apiErr.Code)

	for i, addr := range oddAddresses {
		m, err := c.Lookup(ctx, addr)
		require.NoError(t, err, addr)
		require.Equal(t, addr, m.AIAgentAddress)
		require.Equal(t, fmt.Sprintf("https://agents.example.com/%d", i), m.InboxName)
	}

	addr := oddAddresses[0]
	_, err = c.Lookup(ctx, addr) // cached now
	require.NoError(t, err)
	inactive, secrets := mapping.StatusInactive, []string{"whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"}
	upd, err := admin.UpdateAgent(ctx, addr, &apiclient.AgentUpdate{Status: &inactive, SigningSecrets: &secrets})
	require.NoError(t, err)
	require.Equal(t, mapping.StatusInactive, upd.Status)
	m, err := c.LookupFresh(ctx, addr)
	require.NoError(t, err)
	require.Equal(t, mapping.StatusInactive, m.Status, "a fresh lookup sees the change")
	require.Equal(t, secrets, m.SigningSecrets, "the router's lookup gets the secrets unmasked")
	m, err = c.Lookup(ctx, addr)
	require.NoError(t, err)
	require.Equal(t, mapping.StatusInactive, m.Status, "and refreshes the cache")

	require.NoError(t, admin.ReportHealth(ctx, &apiclient.HealthReport{AIAgentAddress: oddAddresses[1], Status: mapping.HealthUnhealthy, Details: "timeouts"}))
	m, err = c.LookupFresh(ctx, oddAddresses[1])
	require.NoError(t, err)
	require.Equal(t, mapping.StatusInactive, m.Status)
	require.Equal(t, "timeouts", m.Health.Details)
	require.NoError(t, admin.ReportHealth(ctx, &apiclient.HealthReport{AIAgentAddress: oddAddresses[1], Status: mapping.HealthHealthy}))
	m, err = c.LookupFresh(ctx, oddAddresses[1])
	require.NoError(t, err)
	require.Equal(t, mapping.StatusActive, m.Status)

	var all []string
	cursor := ""
	for {
		p, err := admin.ListAgents(ctx, 4, cursor)
		require.NoError(t, err)
		for _, it := range p.Items {
			all = append(all, it.AIAgentAddress)
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	require.ElementsMatch(t, oddAddresses, all)

	require.NoError(t, admin.DeleteAgent(ctx, addr))
	require.True(t, apiclient.IsNotFound(admin.DeleteAgent(ctx, addr)))
	_, err = c.LookupFresh(ctx, addr)
	require.ErrorIs(t, err, cams.ErrNotFound)
	_, err = c.Lookup(ctx, addr)
	require.ErrorIs(t, err, cams.ErrNotFound, "a 404 drops the cached mapping")
	_, err = admin.GetAgent(ctx, addr)
	require.True(t, apiclient.IsNotFound(err))

	wrong, err := cams.NewClient(cams.ClientConfig{BaseURL: b.srv.URL, APIKey: "nope", Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = wrong.Close() })
	_, err = wrong.Lookup(ctx, oddAddresses[1])
	require.ErrorIs(t, err, cams.ErrUnavailable, "a refused key keeps messages, it does not reject them")
	var camsErr *cams.APIError
	require.ErrorAs(t, err, &camsErr)
	require.Equal(t, "UNAUTHORIZED", camsErr.Code)
}

// waitReady waits until the server at base answers its readiness check.
func waitReady(t *testing.T, client *http.Client, base string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := client.Get(base + "/health/ready")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond)
}

// TestServe runs the whole service as cmd/cams does: migrations, API, graceful stop.
func TestServe(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := config.CAMS{DatabaseURL: pgtest.NewURL(t), Addr: ln.Addr().String(), AdminAPIKeys: "k"}
	cfg.ShutdownTimeout = 5 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs logtest.Buffer
	go func() { done <- Serve(ctx, ln, cfg, slog.New(slog.NewTextHandler(&logs, nil)), nil) }()

	base := "http://" + ln.Addr().String()
	waitReady(t, http.DefaultClient, base)

	c, err := cams.NewClient(cams.ClientConfig{BaseURL: base, APIKey: "k"})
	require.NoError(t, err)
	admin := apiclient.New(10*time.Second, 2)
	admin.CAMSURL, admin.APIKey = base, "k"
	_, err = admin.CreateAgent(ctx, &apiclient.Agent{AIAgentAddress: "a@x", InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.a"})
	require.NoError(t, err)
	m, err := c.Lookup(ctx, "a@x")
	require.NoError(t, err)
	require.Equal(t, "agents.a", m.InboxName)
	require.NoError(t, c.Close())

	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), "go_goroutines", "the default registry has the Go collector")
	require.Contains(t, string(body), "msgrouter_cams_http_requests_total")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	http.DefaultClient.CloseIdleConnections()
	// Without CAMS_SECRETS_KEY: one warning at start (issue 15).
	require.Equal(t, 1, strings.Count(logs.String(), "CAMS_SECRETS_KEY is not set"))
}

func TestServePostgresUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := config.CAMS{DatabaseURL: "postgres://nobody@127.0.0.1:1/none?connect_timeout=2", Addr: ln.Addr().String()}
	err = Serve(context.Background(), ln, cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.ErrorIs(t, err, ErrPostgresUnreachable)
	require.NotContains(t, err.Error(), "\n")
	require.False(t, errors.Is(err, context.Canceled))
}
