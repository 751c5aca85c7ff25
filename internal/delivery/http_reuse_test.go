package delivery

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// reuseInbox answers 204 and counts connections and requests; it keeps the
// Authorization header of the last request.
type reuseInbox struct {
	srv      *httptest.Server
	conns    atomic.Int64
	requests atomic.Int64
	mu       sync.Mutex
	auth     string
}

func newReuseInbox(t *testing.T) *reuseInbox {
	t.Helper()
	in := &reuseInbox{}
	in.srv = startCountingConns(t, &in.conns, func(w http.ResponseWriter, r *http.Request) {
		in.mu.Lock()
		in.auth = r.Header.Get("Authorization")
		in.mu.Unlock()
		in.requests.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	return in
}

// Keep-alive connections are reused: one dial for deliveries in sequence, and few
// dials (about the requests in flight) when many agents (paths) of one host are
// delivered to concurrently.
func TestHTTPReusesConnections(t *testing.T) {
	t.Parallel()
	in := newReuseInbox(t)
	h := newHTTP(t, HTTPConfig{AllowPrivateNetworks: true, MaxIdleConnsPerHost: 8})

	for i := range 200 {
		d := fullDelivery()
		d.DestName = in.srv.URL + "/inbox/" + strconv.Itoa(i%16)
		require.NoError(t, h.Deliver(t.Context(), d))
	}
	require.Equal(t, uint64(1), h.Dials(), "deliveries in sequence share one connection")
	require.Equal(t, int64(1), in.conns.Load())

	const workers = 8 // == MaxIdleConnsPerHost: a connection put back finds a place in the pool
	var wg sync.WaitGroup
	errs := make(chan error, workers*50)
	for w := range workers {
		wg.Go(func() {
			for i := range 50 {
				d := fullDelivery()
				d.DestName = in.srv.URL + "/inbox/" + strconv.Itoa(w*50+i)
				if err := h.Deliver(t.Context(), d); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int64(200+workers*50), in.requests.Load())
	// net/http may dial while it also waits for a connection that is about to be
	// put back (and keeps whichever comes first), so a few more dials than
	// workers are possible; without reuse there would be one per request.
	require.Less(t, h.Dials(), uint64(workers*50/4), "connections are reused")
}

// The Deliverer calls the transport directly; what http.Client added stays: Basic
// auth from the URL's userinfo (an inboxAuth Authorization header wins), and
// transport errors read "Post \"<url>\": …" with the password hidden.
func TestHTTPClientEquivalence(t *testing.T) {
	t.Parallel()
	in := newReuseInbox(t)
	h := newHTTP(t, HTTPConfig{AllowPrivateNetworks: true})
	withUser := strings.Replace(in.srv.URL, "http://", "http://bob:s3cret@", 1) + "/inbox"

	d := fullDelivery()
	d.DestName = withUser
	require.NoError(t, h.Deliver(t.Context(), d))
	req, err := http.NewRequest(http.MethodPost, "http://x/", nil)
	require.NoError(t, err)
	req.SetBasicAuth("bob", "s3cret")
	in.mu.Lock()
	require.Equal(t, req.Header.Get("Authorization"), in.auth)
	in.mu.Unlock()

	d = fullDelivery()
	d.DestName = withUser
	d.Auth = &Auth{Header: "Authorization", Value: "Bearer agent-token"}
	require.NoError(t, h.Deliver(t.Context(), d))
	in.mu.Lock()
	require.Equal(t, "Bearer agent-token", in.auth)
	in.mu.Unlock()

	// A closed port: the connection is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	d = fullDelivery()
	d.DestName = "http://bob:s3cret@" + addr + "/inbox"
	err = h.Deliver(t.Context(), d)
	var e *Error
	require.ErrorAs(t, err, &e)
	require.False(t, e.Permanent)
	require.Contains(t, err.Error(), `Post "http://bob:***@`+addr+`/inbox": `)
	require.NotContains(t, err.Error(), "s3cret")
}

// Per-agent secrets are decoded once and reused; a changed list is decoded anew.
func TestAgentKeyCache(t *testing.T) {
	t.Parallel()
	var c keyCache
	a := []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
	k1, err := c.parse(a)
	require.NoError(t, err)
	k2, err := c.parse(a)
	require.NoError(t, err)
	require.Same(t, &k1[0][0], &k2[0][0], "the second lookup is the cached decode")
	want, err := parseSecrets(a)
	require.NoError(t, err)
	require.Equal(t, want, k1)

	b := append(a, "whsec_c2VjcmV0LWtleS1udW1iZXItdHdvLTEyMzQ1Njc4")
	kb, err := c.parse(b)
	require.NoError(t, err)
	require.Len(t, kb, 2)
	_, err = c.parse([]string{"whsec_%%%"})
	require.ErrorIs(t, err, ErrInvalidSigningSecret)
	_, err = c.parse([]string{"whsec_%%%"})
	require.ErrorIs(t, err, ErrInvalidSigningSecret, "errors are not cached")

	for i := range keyCacheSize + 10 { // the bound: the cache starts over
		_, err := c.parse([]string{"whsec_" + strconv.Itoa(1000+i)})
		require.NoError(t, err)
	}
	require.LessOrEqual(t, len(c.m), keyCacheSize)
}

// BenchmarkHTTPDeliver is one HTTP delivery to a local inbox on a kept-alive
// connection: the Deliverer's own cost plus net/http's and the loopback's.
func BenchmarkHTTPDeliver(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	h, err := NewHTTP(HTTPConfig{AllowPrivateNetworks: true})
	require.NoError(b, err)
	b.Cleanup(h.Close)
	d := fullDelivery()
	d.DestName = srv.URL + "/inbox/1"
	b.ReportAllocs()
	for b.Loop() {
		if err := h.Deliver(b.Context(), d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSign is the webhook-signature of one 256-byte payload with one key.
func BenchmarkSign(b *testing.B) {
	keys, err := parseSecrets([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
	require.NoError(b, err)
	body := make([]byte, 256)
	b.ReportAllocs()
	for b.Loop() {
		_ = sign(keys, "0190b6a2-5f0e-7c39-9a1b-3c4d5e6f7a8b", 1795000000, body)
	}
}
