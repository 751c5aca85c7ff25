package delivery

import (
	"context"
	"errors"
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
