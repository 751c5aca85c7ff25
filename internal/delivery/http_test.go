package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// inbox is an httptest inbox that records what it got and counts connections.
type inbox struct {
	srv   *httptest.Server
	conns atomic.Int64
	got   chan *http.Request
	body  chan []byte
}

func newInbox(t *testing.T, status int) *inbox {
	t.Helper()
	in := &inbox{got: make(chan *http.Request, 16), body: make(chan []byte, 16)}
	in.srv = startCountingConns(t, &in.conns, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		in.got <- r
		in.body <- b
		w.WriteHeader(status)
	})
	return in
}

// startCountingConns starts a test server for h that counts in conns the
// connections dialled to it.
func startCountingConns(t *testing.T, conns *atomic.Int64, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func newHTTP(t *testing.T, cfg HTTPConfig) *HTTP {
	t.Helper()
	h, err := NewHTTP(cfg)
	require.NoError(t, err)
	t.Cleanup(h.Close)
	return h
}

func TestSSRFGuardRefusesLoopback(t *testing.T) {
	t.Parallel()
	in := newInbox(t, http.StatusNoContent)
	port := in.srv.Listener.Addr().(*net.TCPAddr).Port
	h := newHTTP(t, HTTPConfig{Timeout: 5 * time.Second}) // AllowPrivateNetworks false

	for _, dest := range []string{
		in.srv.URL + "/inbox",                                    // 127.0.0.1
		"http://localhost:" + strconv.Itoa(port) + "/inbox",      // a name resolving to loopback
		"http://[::ffff:127.0.0.1]:" + strconv.Itoa(port) + "/x", // IPv4-mapped IPv6
		"http://0.0.0.0:" + strconv.Itoa(port) + "/x",            // reaches localhost on Linux
	} {
		d := fullDelivery()
		d.DestName = dest
		err := h.Deliver(t.Context(), d)
		var e *Error
		require.ErrorAs(t, err, &e, dest)
		require.True(t, e.Permanent, dest)
		require.Equal(t, ReasonDestinationForbidden, e.Reason, "%s: %v", dest, err)
		require.False(t, e.CountsForBreaker, "a refused address says nothing about the destination's health")
		require.ErrorIs(t, err, ErrForbiddenAddress)
	}
	// Short and decimal IPv4 forms are not IP literals to Go's resolver: they go
	// to DNS and fail there. Whatever the error, nothing reaches the server.
	for _, dest := range []string{
		"http://127.1:" + strconv.Itoa(port) + "/x",
		"http://2130706433:" + strconv.Itoa(port) + "/x",
	} {
		d := fullDelivery()
		d.DestName = dest
		require.Error(t, h.Deliver(t.Context(), d), dest)
	}
	require.Zero(t, in.conns.Load(), "no connection may reach the server")
	require.Zero(t, h.Dials(), "a refused address is not a dial")
	require.Empty(t, in.got)

	// The same inbox is reachable when private networks are allowed.
	open := newHTTP(t, HTTPConfig{Timeout: 5 * time.Second, AllowPrivateNetworks: true})
	d := fullDelivery()
	d.DestName = in.srv.URL + "/inbox"
	require.NoError(t, open.Deliver(t.Context(), d))
	require.Equal(t, int64(1), in.conns.Load())
	require.Equal(t, uint64(1), open.Dials())
}

func TestNoProxy(t *testing.T) {
	t.Parallel()
	// A proxy dials the destination itself, beyond the address guard.
	h := newHTTP(t, HTTPConfig{})
	require.Nil(t, h.transport.Proxy)
}

func TestHTTPTimeoutConfig(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-t.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	h := newHTTP(t, HTTPConfig{Timeout: 200 * time.Millisecond, AllowPrivateNetworks: true})
	d := fullDelivery()
	d.DestName = srv.URL
	err := h.Deliver(t.Context(), d) // no ctx deadline: the configured Timeout bounds it
	var e *Error
	require.ErrorAs(t, err, &e)
	require.False(t, e.Permanent)
	require.True(t, e.CountsForBreaker)
	require.Contains(t, err.Error(), "timeout")
}

func TestInvalidURLs(t *testing.T) {
	t.Parallel()
	h := newHTTP(t, HTTPConfig{AllowPrivateNetworks: true})
	for _, dest := range []string{"ftp://example.com/x", "::nope", "/relative"} {
		d := fullDelivery()
		d.DestName = dest
		var e *Error
		require.ErrorAs(t, h.Deliver(t.Context(), d), &e, dest)
		require.True(t, e.Permanent, dest)
		require.Equal(t, ReasonDestinationForbidden, e.Reason, dest)
		require.False(t, e.CountsForBreaker, dest)
	}
}

// verifySignature is an independent Standard Webhooks verifier: it shares no code
// with the signer, so a bug in one is not mirrored in the other.
func verifySignature(t *testing.T, secret, id, ts string, body []byte, header string) bool {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	require.NoError(t, err)
	mac := hmac.New(sha256.New, key)
	_, _ = mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(header) {
		version, value, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(value)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

func TestSignatureKnownVector(t *testing.T) {
	t.Parallel()
	// The example of the Standard Webhooks specification's reference tests.
	keys, err := parseSecrets([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
	require.NoError(t, err)
	got := sign(keys, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
}

func TestWebhookSigning(t *testing.T) {
	t.Parallel()
	const (
		oldSecret   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		newSecret   = "whsec_c2VjcmV0LWtleS1udW1iZXItdHdvLTEyMzQ1Njc4"
		agentSecret = "whsec_YWdlbnQtb3duLXNlY3JldC1ieXRlcw=="
	)
	now := time.Unix(1_795_000_000, 987_000_000)
	clock := func() time.Time { return now }
	payload := []byte(`{"big":123456789012345678901234567890,"s":"\u0000é"}`)

	deliver := func(t *testing.T, global []string, agent []string) (*http.Request, []byte) {
		t.Helper()
		in := newInbox(t, http.StatusOK)
		h := newHTTP(t, HTTPConfig{AllowPrivateNetworks: true, SigningSecrets: global, Now: clock})
		d := fullDelivery()
		d.DestName, d.Payload, d.SigningSecrets = in.srv.URL, payload, agent
		require.NoError(t, h.Deliver(t.Context(), d))
		return <-in.got, <-in.body
	}

	t.Run("unsigned without secrets", func(t *testing.T) {
		t.Parallel()
		r, _ := deliver(t, nil, nil)
		require.Equal(t, fullDelivery().MessageID, r.Header.Get("webhook-id"), "webhook-id is always sent")
		require.Empty(t, r.Header.Values("webhook-timestamp"))
		require.Empty(t, r.Header.Values("webhook-signature"))
	})

	t.Run("rotation: one signature per secret", func(t *testing.T) {
		t.Parallel()
		r, body := deliver(t, []string{oldSecret, newSecret}, nil)
		require.Equal(t, payload, body)
		id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
		require.Equal(t, "1795000000", ts, "unix seconds of the attempt")
		require.Len(t, strings.Fields(sig), 2)
		require.True(t, verifySignature(t, oldSecret, id, ts, body, sig), "a receiver on the old secret accepts")
		require.True(t, verifySignature(t, newSecret, id, ts, body, sig), "a receiver on the new secret accepts")
		require.False(t, verifySignature(t, agentSecret, id, ts, body, sig))
		require.False(t, verifySignature(t, oldSecret, id, "1795000001", body, sig), "the timestamp is signed")
		require.False(t, verifySignature(t, oldSecret, id, ts, append(body, ' '), sig), "the body is signed")
	})

	t.Run("per-agent secrets replace the global ones", func(t *testing.T) {
		t.Parallel()
		r, body := deliver(t, []string{oldSecret}, []string{agentSecret})
		id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
		require.Len(t, strings.Fields(sig), 1)
		require.True(t, verifySignature(t, agentSecret, id, ts, body, sig))
		require.False(t, verifySignature(t, oldSecret, id, ts, body, sig))
	})
}

func TestInvalidSigningSecrets(t *testing.T) {
	t.Parallel()
	_, err := NewHTTP(HTTPConfig{SigningSecrets: []string{"whsec_not base64!"}})
	require.ErrorIs(t, err, ErrInvalidSigningSecret)
	require.NotContains(t, err.Error(), "not base64", "secrets never appear in errors")

	in := newInbox(t, http.StatusOK)
	h := newHTTP(t, HTTPConfig{AllowPrivateNetworks: true})
	d := fullDelivery()
	d.DestName, d.SigningSecrets = in.srv.URL, []string{"whsec_%%%"}
	var e *Error
	require.ErrorAs(t, h.Deliver(t.Context(), d), &e)
	require.False(t, e.Permanent, "the secrets may be fixed before the next attempt")
	require.False(t, e.CountsForBreaker, "the destination is not at fault")
	require.ErrorIs(t, e, ErrInvalidSigningSecret)
	require.Zero(t, in.conns.Load(), "never sent unsigned when signing is configured")
}

func TestCleanText(t *testing.T) {
	t.Parallel()
	require.Equal(t, "a b c\uFFFD", cleanText([]byte("a\x00 b\nc\xff")))
}
