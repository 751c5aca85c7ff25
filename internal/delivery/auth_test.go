package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// Inbox credentials (issue 15): sent in their header; refused without sending
// anything when invalid or when they would replace a header the router sets; a
// 401/403 says the inbox refused the credentials.
func TestHTTPInboxAuth(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	var got atomic.Value
	status := atomic.Int64{}
	status.Store(http.StatusNoContent)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		got.Store(r.Header.Clone())
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(srv.Close)
	h := newHTTP(t, HTTPConfig{AllowPrivateNetworks: true})
	d := func(a *Auth) *Delivery {
		return &Delivery{MessageID: "m1", AIAgentAddress: "a", DestType: "HTTP_ENDPOINT", DestName: srv.URL, Payload: []byte(`{}`), Auth: a}
	}
	ctx := context.Background()

	require.NoError(t, h.Deliver(ctx, d(&Auth{Header: "X-Api-Key", Value: "k1"})))
	require.Equal(t, "k1", got.Load().(http.Header).Get("X-Api-Key"))

	for name, a := range map[string]*Auth{
		"invalid in CAMS": {Err: errors.New("inboxAuth.token: is required")},
		"content-type":    {Header: "Content-Type", Value: "text/plain"},
		"message id":      {Header: "X-Message-Id", Value: "other"},
		"webhook":         {Header: "webhook-signature", Value: "v1,forged"},
		"empty":           {Header: "Authorization", Value: ""},
	} {
		before := requests.Load()
		err := h.Deliver(ctx, d(a))
		var e *Error
		require.ErrorAs(t, err, &e, name)
		require.False(t, e.Permanent, name)
		require.False(t, e.CountsForBreaker, name)
		require.Contains(t, err.Error(), "inboxAuth", name)
		require.Equal(t, before, requests.Load(), "%s: nothing sent", name)
	}

	for _, st := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		status.Store(int64(st))
		err := h.Deliver(ctx, d(&Auth{Header: "Authorization", Value: "Bearer wrong"}))
		require.ErrorContains(t, err, "the inbox refused the credentials")
		require.NotContains(t, err.Error(), "wrong")
		err = h.Deliver(ctx, d(nil))
		require.ErrorContains(t, err, "without credentials")
	}
}

// The system's own services (router admin API, CAMS) are never an inbox, even
// with AllowPrivateNetworks (issue 8 item 5): DESTINATION_FORBIDDEN at dial time,
// nothing sent.
func TestHTTPRefusesSystemAddrs(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	system := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(system.Close)
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(agent.Close)
	port := system.Listener.Addr().(*net.TCPAddr).Port
	for name, addrs := range map[string][]string{
		"as listened":  {system.Listener.Addr().String()},
		"all addrs":    {fmt.Sprintf(":%d", port)},
		"by its URL":   {OriginAddr(system.URL)},
		"by hostname":  {fmt.Sprintf("localhost:%d", port)},
		"with ignored": {"", "nonsense", ":0", OriginAddr(system.URL)},
	} {
		h := newHTTP(t, HTTPConfig{AllowPrivateNetworks: true, SystemAddrs: addrs})
		for _, u := range []string{system.URL + "/v1/agent-inboxes", fmt.Sprintf("http://localhost:%d/x", port), fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/", port)} {
			err := h.Deliver(context.Background(), &Delivery{MessageID: "m", AIAgentAddress: "a", DestName: u, Payload: []byte(`{}`)})
			var e *Error
			require.ErrorAs(t, err, &e, "%s %s", name, u)
			require.True(t, e.Permanent, name)
			require.Equal(t, ReasonDestinationForbidden, e.Reason, name)
			require.ErrorIs(t, err, ErrForbiddenAddress)
		}
		require.NoError(t, h.Deliver(context.Background(), &Delivery{MessageID: "m", AIAgentAddress: "a", DestName: agent.URL, Payload: []byte(`{}`)}), name)
	}
	require.Zero(t, hits.Load(), "nothing reached the system's service")
	require.Equal(t, "example.com:443", OriginAddr("https://example.com/x"))
	require.Equal(t, "10.0.0.1:8001", OriginAddr("http://10.0.0.1:8001"))
}
