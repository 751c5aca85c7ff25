package cams

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/testutil/fakeclock"
	"github.com/msgrouter/msgrouter/internal/testutil/promtest"
)

// fakeCAMS is an httptest CAMS whose answers a test switches at will.
type fakeCAMS struct {
	srv      *httptest.Server
	requests atomic.Int64

	mu     sync.Mutex
	answer func(w http.ResponseWriter, r *http.Request)
	paths  []string
	auth   []string
}

func newFakeCAMS(t *testing.T) *fakeCAMS {
	t.Helper()
	f := &fakeCAMS{}
	f.setMapping()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.mu.Lock()
		f.paths = append(f.paths, r.URL.EscapedPath())
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		answer := f.answer
		f.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCAMS) set(answer func(w http.ResponseWriter, r *http.Request)) {
	f.mu.Lock()
	f.answer = answer
	f.mu.Unlock()
}

// setMapping answers every lookup with a mapping of the requested address.
func (f *fakeCAMS) setMapping() {
	f.set(func(w http.ResponseWriter, r *http.Request) {
		addr := r.PathValue("x")
		if addr == "" {
			addr = "agent@x"
		}
		httpapi.WriteJSON(w, http.StatusOK, mapping.Mapping{
			AIAgentAddress: addr, InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.x", Status: mapping.StatusActive,
			RegistrationTimestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		})
	})
}

func (f *fakeCAMS) setStatus(status int) {
	f.set(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, status, "SOMETHING", "fake answer")
	})
}

type clientBundle struct {
	fake   *fakeCAMS
	client *Client
	reg    *prometheus.Registry
	clock  *fakeclock.Clock
}

func setupClient(t *testing.T, edit func(*ClientConfig)) *clientBundle {
	t.Helper()
	b := &clientBundle{fake: newFakeCAMS(t), reg: prometheus.NewRegistry(), clock: fakeclock.New(time.Unix(1_800_000_000, 0))}
	cfg := ClientConfig{
		BaseURL: b.fake.srv.URL, Timeout: 5 * time.Second, CacheTTL: 30 * time.Second,
		BreakerFailures: 3, BreakerOpenTimeout: time.Hour, Registerer: b.reg, Now: b.clock.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := NewClient(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	b.client = c
	return b
}

// metric reads one sample of the registry; labels given as name, value pairs.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	return promtest.Value(t, reg, name, labels...)
}

func TestClientCacheTTL(t *testing.T) {
	t.Parallel()
	b := setupClient(t, nil)
	ctx := context.Background()

	m, err := b.client.Lookup(ctx, "agent@x")
	require.NoError(t, err)
	require.Equal(t, "agents.x", m.InboxName)
	m.InboxName = "changed by the caller" // must not reach the cache

	b.clock.Advance(29 * time.Second)
	m2, err := b.client.Lookup(ctx, "agent@x")
	require.NoError(t, err)
	require.Equal(t, "agents.x", m2.InboxName)
	require.EqualValues(t, 1, b.fake.requests.Load(), "served from the cache within the TTL")

	b.clock.Advance(time.Second)
	_, err = b.client.Lookup(ctx, "agent@x")
	require.NoError(t, err)
	require.EqualValues(t, 2, b.fake.requests.Load(), "expired after the TTL")

	_, err = b.client.LookupFresh(ctx, "agent@x")
	require.NoError(t, err)
	require.EqualValues(t, 3, b.fake.requests.Load(), "LookupFresh bypasses the cache")

	require.Equal(t, 1.0, metric(t, b.reg, "msgrouter_cams_cache_hits_total"))
	require.Equal(t, 2.0, metric(t, b.reg, "msgrouter_cams_cache_misses_total"))
	require.Equal(t, 4.0, metric(t, b.reg, "msgrouter_cams_lookups_total", "outcome", "found"))
	require.Equal(t, 3.0, metric(t, b.reg, "msgrouter_cams_lookup_duration_seconds"))

	nocache := setupClient(t, func(c *ClientConfig) { c.CacheTTL = 0 })
	for range 3 {
		_, err := nocache.client.Lookup(ctx, "agent@x")
		require.NoError(t, err)
	}
	require.EqualValues(t, 3, nocache.fake.requests.Load(), "CacheTTL 0 = no cache")
}

func TestClientNotFoundIsAnAnswer(t *testing.T) {
	t.Parallel()
	b := setupClient(t, func(c *ClientConfig) { c.BreakerFailures = 1 })
	b.fake.setStatus(http.StatusNotFound)
	for range 5 {
		_, err := b.client.Lookup(context.Background(), "nobody@x")
		require.ErrorIs(t, err, ErrNotFound)
		require.NotErrorIs(t, err, ErrUnavailable)
	}
	require.EqualValues(t, 5, b.fake.requests.Load(), "404s are not cached")
	require.True(t, b.client.Available(), "404s do not trip the breaker")
	require.Equal(t, gobreaker.StateClosed, b.client.cb.State())
	require.Equal(t, 5.0, metric(t, b.reg, "msgrouter_cams_lookups_total", "outcome", "not_found"))
}

func TestClientSingleflight(t *testing.T) {
	t.Parallel()
	b := setupClient(t, nil)
	release := make(chan struct{})
	arrived := make(chan struct{}, 200)
	b.fake.set(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		httpapi.WriteJSON(w, http.StatusOK, mapping.Mapping{AIAgentAddress: "agent@x", InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.x", Status: mapping.StatusActive})
	})
	const n = 100
	var joined sync.WaitGroup
	joined.Add(n)
	b.client.testHookJoined = joined.Done

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			m, err := b.client.Lookup(context.Background(), "agent@x")
			if err == nil && m.InboxName != "agents.x" {
				err = errors.New("wrong mapping")
			}
			errs <- err
		})
	}
	joined.Wait() // all 100 are waiting on the one request
	<-arrived
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, b.fake.requests.Load())
}

func TestClientBreakerOpensAndRecovers(t *testing.T) {
	t.Parallel()
	b := setupClient(t, func(c *ClientConfig) { c.BreakerOpenTimeout = 50 * time.Millisecond; c.CacheTTL = 0 })
	ctx := context.Background()
	b.fake.setStatus(http.StatusInternalServerError)

	for range 3 {
		_, err := b.client.Lookup(ctx, "agent@x")
		require.ErrorIs(t, err, ErrUnavailable)
		var apiErr *APIError
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusInternalServerError, apiErr.Status)
	}
	// 3 lookups and one check that CAMS answers for another address (it does not).
	require.EqualValues(t, 4, b.fake.requests.Load())
	_, err := b.client.Lookup(ctx, "agent@x")
	require.ErrorIs(t, err, ErrUnavailable)
	require.ErrorIs(t, err, gobreaker.ErrOpenState)
	require.EqualValues(t, 4, b.fake.requests.Load(), "an open breaker sends nothing")
	require.Equal(t, 2.0, metric(t, b.reg, "msgrouter_breaker_state", "breaker", "cams"))
	require.Equal(t, 1.0, metric(t, b.reg, "msgrouter_cams_lookups_total", "outcome", "breaker_open"))
	require.Equal(t, 3.0, metric(t, b.reg, "msgrouter_cams_lookups_total", "outcome", "error"))

	// Half-open: one probe; it fails, the breaker opens again.
	require.Eventually(t, b.client.Available, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 1.0, metric(t, b.reg, "msgrouter_breaker_state", "breaker", "cams"))
	_, err = b.client.Lookup(ctx, "agent@x")
	require.ErrorIs(t, err, ErrUnavailable)
	require.NotErrorIs(t, err, gobreaker.ErrOpenState)
	require.False(t, b.client.Available())

	// CAMS is back: the next probe closes it.
	b.fake.setMapping()
	require.Eventually(t, b.client.Available, 5*time.Second, 5*time.Millisecond)
	_, err = b.client.Lookup(ctx, "agent@x")
	require.NoError(t, err)
	require.Equal(t, gobreaker.StateClosed, b.client.cb.State())
	require.Equal(t, 0.0, metric(t, b.reg, "msgrouter_breaker_state", "breaker", "cams"))
	require.Equal(t, 2.0, metric(t, b.reg, "msgrouter_breaker_transitions_total", "breaker", "cams", "to", "open"))
	require.Equal(t, 2.0, metric(t, b.reg, "msgrouter_breaker_transitions_total", "breaker", "cams", "to", "half-open"))
	require.Equal(t, 1.0, metric(t, b.reg, "msgrouter_breaker_transitions_total", "breaker", "cams", "to", "closed"))
}

func TestClientTransientFailures(t *testing.T) {
	t.Parallel()
	cases := map[string]func(w http.ResponseWriter, r *http.Request){
		"500": func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) },
		"503": func(w http.ResponseWriter, r *http.Request) {
			httpapi.WriteRetryAfter(w, http.StatusServiceUnavailable, "UNAVAILABLE", "later", time.Second)
		},
		"429": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
		},
		"401 (wrong CAMS_API_KEY)": func(w http.ResponseWriter, r *http.Request) {
			httpapi.WriteError(w, http.StatusUnauthorized, "UNAUTHORIZED", "no")
		},
		"undecodable body": func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>")) },
		"truncated body": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte(`{"aiAgentAddress":`))
		},
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setupClient(t, func(c *ClientConfig) { c.BreakerFailures = 2 })
			b.fake.set(answer)
			for range 2 {
				_, err := b.client.Lookup(context.Background(), "agent@x")
				require.ErrorIs(t, err, ErrUnavailable)
				require.NotErrorIs(t, err, ErrNotFound)
			}
			require.False(t, b.client.Available(), "each counts as a failure")
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		b := setupClient(t, func(c *ClientConfig) { c.BreakerFailures = 1 })
		b.fake.srv.Close()
		_, err := b.client.Lookup(context.Background(), "agent@x")
		require.ErrorIs(t, err, ErrUnavailable)
		require.False(t, b.client.Available())
	})
	t.Run("CAMS timeout counts", func(t *testing.T) {
		t.Parallel()
		b := setupClient(t, func(c *ClientConfig) { c.BreakerFailures = 2; c.Timeout = 20 * time.Millisecond })
		b.fake.set(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		for range 2 {
			_, err := b.client.Lookup(context.Background(), "agent@x")
			require.ErrorIs(t, err, ErrUnavailable)
			require.NotErrorIs(t, err, context.DeadlineExceeded, "our timeout is CAMS's failure, not the caller's")
		}
		require.False(t, b.client.Available())
	})
}

func TestClientCallerCancellationIsNotAFailure(t *testing.T) {
	t.Parallel()
	b := setupClient(t, func(c *ClientConfig) { c.BreakerFailures = 1 })
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	b.fake.set(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
			httpapi.WriteJSON(w, http.StatusOK, mapping.Mapping{AIAgentAddress: "agent@x", InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.x", Status: mapping.StatusActive})
		case <-r.Context().Done():
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.client.Lookup(ctx, "agent@x")
		done <- err
	}()
	<-arrived
	cancel()
	err := <-done
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrUnavailable)

	dctx, dcancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer dcancel()
	_, err = b.client.Lookup(dctx, "agent@y")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// The abandoned requests finish in the background and fill the cache.
	close(release)
	require.Eventually(t, func() bool { return b.client.cached("agent@x") != nil }, 5*time.Second, 5*time.Millisecond)
	require.True(t, b.client.Available())
	require.Equal(t, gobreaker.StateClosed, b.client.cb.State())
	require.Zero(t, b.client.cb.Counts().TotalFailures)

	// Close cancels what is in flight, without counting it either.
	b.fake.set(func(w http.ResponseWriter, r *http.Request) { arrived <- struct{}{}; <-r.Context().Done() })
	go func() {
		_, err := b.client.Lookup(context.Background(), "agent@z")
		done <- err
	}()
	<-arrived
	require.NoError(t, b.client.Close())
	err = <-done
	require.Error(t, err)
	require.Zero(t, b.client.cb.Counts().TotalFailures)
	require.Equal(t, gobreaker.StateClosed, b.client.cb.State())
}

func TestClientRequests(t *testing.T) {
	t.Parallel()
	b := setupClient(t, func(c *ClientConfig) { c.APIKey = "k3y"; c.BaseURL += "/" })
	for _, addr := range []string{"a/b%c@d", "агент@пример.рф", "..", ".", "q?x=1#f"} {
		_, err := b.client.Lookup(context.Background(), addr)
		require.NoError(t, err)
	}
	b.fake.mu.Lock()
	defer b.fake.mu.Unlock()
	require.Equal(t, []string{
		"/v1/agent-inboxes/a%2Fb%25c@d",
		"/v1/agent-inboxes/%D0%B0%D0%B3%D0%B5%D0%BD%D1%82@%D0%BF%D1%80%D0%B8%D0%BC%D0%B5%D1%80.%D1%80%D1%84",
		"/v1/agent-inboxes/%2E%2E",
		"/v1/agent-inboxes/%2E",
		"/v1/agent-inboxes/q%3Fx=1%23f",
	}, b.fake.paths)
	for _, a := range b.fake.auth {
		require.Equal(t, "Bearer k3y", a)
	}

	_, err := NewClient(ClientConfig{BaseURL: "127.0.0.1:8001"})
	require.Error(t, err)
}

// The cache is bounded (CacheMaxEntries): a full cache evicts its least recently
// used mapping, fresh or last known, and keeps the others.
func TestClientCacheEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	b := setupClient(t, func(c *ClientConfig) { c.CacheMaxEntries = 2 })
	ctx := context.Background()
	lookup := func(addr string) {
		t.Helper()
		_, err := b.client.Lookup(ctx, addr)
		require.NoError(t, err)
	}
	lookup("a")
	lookup("b")
	lookup("a") // a hit: a is now more recent than b
	require.EqualValues(t, 2, b.fake.requests.Load())
	lookup("c") // evicts b
	require.EqualValues(t, 3, b.fake.requests.Load())
	lookup("a")
	lookup("c")
	require.EqualValues(t, 3, b.fake.requests.Load(), "a and c stayed")
	lookup("b")
	require.EqualValues(t, 4, b.fake.requests.Load(), "b was evicted")

	// Expired entries stay the last known mapping (InboxAuth's fallback while CAMS
	// cannot answer) until evicted like any other.
	b.clock.Advance(time.Hour)
	require.NotNil(t, b.client.lastKnown("b"))
	require.NotNil(t, b.client.lastKnown("c"))
	require.Nil(t, b.client.lastKnown("a"), "a was the least recently used when b came back")
}
