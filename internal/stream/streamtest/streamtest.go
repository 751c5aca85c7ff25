// Package streamtest gives tests an in-process JetStream holding the router's
// stream (ROUTER_MESSAGES), made as ingest and the router make it. It is imported
// by tests only (it starts a NATS server).
package streamtest

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// Start starts an in-process JetStream server (natstest.Start) and creates the
// router's stream on it with stream.Ensure. It returns the server, a JetStream
// context connected to it, and the stream; everything stops when t ends. A
// failure fails t.
func Start(t testing.TB) (*natstest.Server, jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	st, err := stream.Ensure(t.Context(), js)
	require.NoError(t, err)
	return srv, js, st
}
