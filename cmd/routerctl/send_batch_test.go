package main

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/ingest"
	"github.com/msgrouter/msgrouter/internal/message"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// routerctl send --count N [--batch B] against the real ingest handler and an
// in-process JetStream server.
func TestSendMany(t *testing.T) {
	t.Parallel()
	_, st, srv := ingestOnJetStream(t)
	c := cli{env: map[string]string{"INGEST_URL": srv.URL}}

	o := c.run(t, "send", "--agent", "a", "--payload", `{"k":1}`, "--count", "5", "--batch", "2", "--service", "crm", "--sender-message-id", "s")
	require.Equal(t, 0, o.code, o.stderr)
	lines := strings.Fields(o.stdout)
	require.Len(t, lines, 5)
	for i, id := range lines {
		require.Equal(t, message.SenderID("crm", "s-"+string(rune('1'+i))).String(), id, "in order")
	}

	o = c.run(t, "send", "--agent", "a", "--payload", `{}`, "--count", "3")
	require.Equal(t, 0, o.code, o.stderr)
	require.Len(t, strings.Fields(o.stdout), 3)

	info, err := st.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(8), info.State.Msgs)

	o = c.run(t, "send", "--agent", "a b", "--payload", `{}`, "--count", "2", "--batch", "10")
	require.Equal(t, 1, o.code)
	require.Equal(t, 2, strings.Count(o.stdout, "error INVALID_REQUEST: aiAgentAddress has whitespace"), o.stdout)
	require.Contains(t, o.stderr, "2 of 2 messages were refused")

	for _, args := range [][]string{
		{"--count", "0"}, {"--batch", "1001"}, {"--count", "2", "--wait"},
	} {
		o = c.run(t, append([]string{"send", "--agent", "a", "--payload", "{}"}, args...)...)
		require.Equal(t, 2, o.code, "%v: %s", args, o.stderr)
	}
}

// ingestOnJetStream serves the real ingest handler over HTTP on an in-process
// JetStream server with the ROUTER_MESSAGES stream; all closed when t ends.
func ingestOnJetStream(t *testing.T) (*natstest.Server, jetstream.Stream, *httptest.Server) {
	t.Helper()
	ns := natstest.Start(t)
	nc, err := stream.Connect(config.NATS{URL: ns.URL}, "routerctl-test")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	st, err := stream.Ensure(t.Context(), js)
	require.NoError(t, err)
	h, err := ingest.NewHandler(ingest.Config{JS: js, NC: nc, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return ns, st, srv
}
