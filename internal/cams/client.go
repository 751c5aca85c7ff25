package cams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/sync/singleflight"

	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

// ErrNotFound: CAMS answered 404, it has no agent under the address; the one
// lookup answer that rejects a message (DESIGN §4). It is mapping.ErrNotFound (as
// os.ErrNotExist is fs.ErrNotExist), so internal/routing branches on it without
// importing this package's HTTP code.
var ErrNotFound = mapping.ErrNotFound

// ErrUnavailable: CAMS did not give a usable answer (timeout, connection error, 5xx,
// 429, an undecodable body, an open breaker). Transient: the router keeps the message
// and retries later; it never rejects on it.
var ErrUnavailable = errors.New("CAMS unavailable")

// errClosed: the client was closed while a request was in flight. Not CAMS's fault,
// so the breaker ignores it.
var errClosed = errors.New("CAMS client closed")

// Client defaults.
const (
	DefaultTimeout            = 2 * time.Second
	DefaultBreakerFailures    = 5
	DefaultBreakerOpenTimeout = 30 * time.Second
	// DefaultCacheMaxEntries bounds the lookup cache; beyond it the least recently
	// used mapping is evicted.
	DefaultCacheMaxEntries = 100_000
	maxResponseBytes       = 1 << 20
	breakerName            = "cams"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	BaseURL string // CAMS_API_URL, e.g. http://127.0.0.1:8001. Required.
	APIKey  string // CAMS_API_KEY, sent as a bearer key. Defaults to none.
	// Timeout bounds one HTTP request to CAMS (CAMS_TIMEOUT). A request that times
	// out counts as a CAMS failure. Defaults to 2s.
	Timeout time.Duration
	// CacheTTL is how long a found ACTIVE, well-formed mapping is reused
	// (CAMS_CACHE_TTL); others are kept at most ShortCacheTTL. 0 = no cache.
	CacheTTL time.Duration
	// CacheMaxEntries bounds the cache (mappings, fresh or last known); beyond it the
	// least recently used is evicted, in constant time. Defaults to 100000.
	CacheMaxEntries int
	// BreakerFailures consecutive failures open the breaker (BREAKER_FAILURES).
	// Defaults to 5.
	BreakerFailures uint32
	// BreakerOpenTimeout is how long the breaker stays open before letting one probe
	// through (BREAKER_OPEN_TIMEOUT). Defaults to 30s.
	BreakerOpenTimeout time.Duration
	// HTTPClient sends the requests. Defaults to a client with its own pooled
	// transport; its Timeout is not used (Timeout above is, per request).
	HTTPClient *http.Client
	// Registerer receives the lookup metrics. Defaults to none (unregistered).
	Registerer prometheus.Registerer
	// BreakerMetrics reports the breaker's state. Defaults to
	// breaker.NewMetrics(Registerer), which shares collectors with other breakers
	// registered on the same Registerer.
	BreakerMetrics *breaker.Metrics
	Logger         *slog.Logger     // Defaults to discarding.
	Now            func() time.Time // the cache's clock. Defaults to time.Now.
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.CacheMaxEntries <= 0 {
		c.CacheMaxEntries = DefaultCacheMaxEntries
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = DefaultBreakerFailures
	}
	if c.BreakerOpenTimeout <= 0 {
		c.BreakerOpenTimeout = DefaultBreakerOpenTimeout
	}
	if c.HTTPClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Every router worker talks to the one CAMS origin: keep enough idle
		// connections for it, or each burst pays new TCP (and TLS) handshakes.
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 128
		c.HTTPClient = &http.Client{Transport: t}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.BreakerMetrics == nil {
		c.BreakerMetrics = breaker.NewMetrics(c.Registerer)
	}
	return c
}

// Client looks agents up in CAMS for the router. It is read-only: the admin calls
// (register, update, delete, health reports) are the API client's
// (internal/apiclient, used by routerctl and the tests).
//
// Lookups go through, in order: a TTL cache of found mappings (a bounded LRU,
// golang-lru); singleflight, so
// concurrent lookups of one address make one request; a circuit breaker, so a CAMS
// outage costs one fast error per lookup instead of a timeout each. Only found
// mappings are cached: a 404 makes the router reject the message for good, so a
// stale "not found" would wrongly reject messages for an agent registered a moment
// later, while a stale mapping only delays noticing a change by at most CacheTTL.
//
// Requests run detached from the caller's context (keeping its values, e.g. the
// trace), bounded by Timeout: one caller giving up does not fail the others waiting
// on the same request, and never counts against CAMS. Close cancels what is in
// flight.
type Client struct {
	cfg   ClientConfig
	base  string // the base URL without a trailing '/'
	log   *slog.Logger
	group singleflight.Group
	cb    *gobreaker.CircuitBreaker[*mapping.Mapping]

	// cache holds the last mapping CAMS gave per address with its expiry (see
	// store): fresh entries answer Lookup, expired ones remain the last known
	// mapping until evicted (least recently used first) or CAMS answers 404.
	cache *lru.Cache[string, cacheEntry]

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // requests in flight, waited for by Close

	closeCtx context.Context
	close    context.CancelFunc

	// Telling a CAMS that fails for some addresses from one that fails for all
	// (DESIGN §4): see addressOnly.
	partial partialFailures

	addressFailures prometheus.Counter

	lookups     *prometheus.CounterVec
	lookupTime  prometheus.Histogram
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter

	testHookJoined func()
}

// cacheEntry is a mapping and when it stops being fresh, by ClientConfig.Now. The
// expiry is per entry (CacheTTL or ShortCacheTTL, see ttlFor) and the entry
// outlives it as the last known mapping, so the LRU itself never expires anything.
type cacheEntry struct {
	m       *mapping.Mapping
	expires time.Time
}

// Lookup outcomes (label of msgrouter_cams_lookups_total).
const (
	outcomeFound       = "found"
	outcomeNotFound    = "not_found"
	outcomeError       = "error"
	outcomeBreakerOpen = "breaker_open"
)

// NewClient returns a Client for the CAMS at cfg.BaseURL.
func NewClient(cfg ClientConfig) (*Client, error) {
	base := strings.TrimRight(cfg.BaseURL, "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("CAMS base URL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	cfg = cfg.withDefaults()
	cache, err := lru.New[string, cacheEntry](cfg.CacheMaxEntries)
	if err != nil {
		return nil, fmt.Errorf("CAMS cache: %w", err) // only for a size <= 0, which withDefaults rules out
	}
	c := &Client{cfg: cfg, base: base, log: cfg.Logger, cache: cache}
	c.closeCtx, c.close = context.WithCancel(context.Background())

	f := promauto.With(cfg.Registerer)
	c.lookups = f.NewCounterVec(prometheus.CounterOpts{
		Name: "msgrouter_cams_lookups_total",
		Help: "CAMS lookups by outcome: found, not_found, error, breaker_open (cache hits included).",
	}, []string{"outcome"})
	c.lookupTime = f.NewHistogram(prometheus.HistogramOpts{
		Name:    "msgrouter_cams_lookup_duration_seconds",
		Help:    "Duration of the HTTP lookups sent to CAMS (cache hits excluded).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	c.cacheHits = f.NewCounter(prometheus.CounterOpts{Name: "msgrouter_cams_cache_hits_total", Help: "CAMS lookups answered from the cache."})
	c.cacheMisses = f.NewCounter(prometheus.CounterOpts{Name: "msgrouter_cams_cache_misses_total", Help: "CAMS lookups the cache could not answer."})
	c.addressFailures = f.NewCounter(prometheus.CounterOpts{
		Name: "msgrouter_cams_address_failures_total",
		Help: "CAMS lookups that failed (5xx, timeout) for one address while CAMS answered for others: not counted by the CAMS breaker.",
	})
	for _, o := range []string{outcomeFound, outcomeNotFound, outcomeError, outcomeBreakerOpen} {
		c.lookups.WithLabelValues(o) // show every outcome at 0 from the start
	}

	c.cb = gobreaker.NewCircuitBreaker[*mapping.Mapping](gobreaker.Settings{
		Name:    breakerName,
		Timeout: cfg.BreakerOpenTimeout,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			return n.ConsecutiveFailures >= cfg.BreakerFailures
		},
		// A 404 is a valid answer: CAMS is healthy.
		IsSuccessful: func(err error) bool { return err == nil || errors.Is(err, ErrNotFound) },
		// Shutting down is not a CAMS failure (STYLE: cancellation is not a failure).
		// A CAMS timeout is our own per-request deadline: it wraps ErrUnavailable, not
		// a caller's context error, and counts.
		// A failure that concerns one address only (CAMS answers for others, checked
		// by addressOnly) says nothing about CAMS as a whole: it must not pause
		// routing for every agent (DESIGN §4).
		IsExcluded: func(err error) bool {
			return errors.Is(err, errClosed) || errors.Is(err, context.Canceled) || errors.Is(err, errAddressOnly)
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			cfg.BreakerMetrics.OnStateChange(name, from, to)
			// Runs under the breaker's lock: log only, never call back into it.
			c.log.Warn("CAMS circuit breaker changed state", "breaker", name, "from", from.String(), "to", to.String())
		},
	})
	cfg.BreakerMetrics.Observe(breakerName, gobreaker.StateClosed)
	return c, nil
}

// Close cancels the requests in flight and waits for them to end. Lookups after
// Close fail. Idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.close()
	c.inflight.Wait()
	c.cfg.HTTPClient.CloseIdleConnections()
	return nil
}

// Available reports whether the breaker lets lookups through (closed or half-open).
// The consumer pauses fetching while it is false.
func (c *Client) Available() bool { return c.cb.State() != gobreaker.StateOpen }

// Lookup returns the mapping of address: from the cache when fresh, else from CAMS.
// Errors: ErrNotFound when CAMS does not know the agent; an error wrapping
// ErrUnavailable when CAMS gave no usable answer (transient; with
// gobreaker.ErrOpenState when the breaker is open); the caller's ctx error when the
// caller gave up first. The mapping is the caller's own copy.
func (c *Client) Lookup(ctx context.Context, address string) (*mapping.Mapping, error) {
	if c.cfg.CacheTTL > 0 {
		if m := c.cached(address); m != nil {
			c.cacheHits.Inc()
			c.lookups.WithLabelValues(outcomeFound).Inc()
			return m, nil
		}
		c.cacheMisses.Inc()
	}
	return c.lookup(ctx, address)
}

// LookupFresh is Lookup without reading the cache (a replay must see CAMS's current
// answer); it still shares in-flight requests, goes through the breaker, and
// refreshes the cache when the agent is found.
func (c *Client) LookupFresh(ctx context.Context, address string) (*mapping.Mapping, error) {
	return c.lookup(ctx, address)
}

func (c *Client) cached(address string) *mapping.Mapping {
	e, ok := c.cache.Get(address)
	if !ok || !c.cfg.Now().Before(e.expires) {
		// An expired entry stays as the last known answer (lastKnown) until the
		// least recently used entry of a full cache or CAMS says the agent is gone.
		return nil
	}
	return e.m.Clone()
}

// lastKnown returns the last mapping CAMS gave for address, fresh or not; nil when
// none is kept.
func (c *Client) lastKnown(address string) *mapping.Mapping {
	if e, ok := c.cache.Get(address); ok {
		return e.m.Clone()
	}
	return nil
}

// InboxAuth returns the agent's inbox credentials for an HTTP delivery, looked up
// at delivery time (DESIGN §4): through the cache, so a change in CAMS applies
// within CacheTTL. nil when the agent has none or is no longer registered (the
// retry's routing decides what happens to it). When CAMS cannot answer, the last
// known credentials are used, as the last known inbox is (DESIGN §5); with none
// known, none are sent. Errors: only the caller's ctx error.
func (c *Client) InboxAuth(ctx context.Context, address string) (*mapping.InboxAuth, error) {
	m, err := c.Lookup(ctx, address)
	switch {
	case err == nil:
		return m.InboxAuth, nil
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case errors.Is(err, ErrUnavailable):
		if m := c.lastKnown(address); m != nil {
			return m.InboxAuth, nil
		}
		// Nothing known (a router started during the outage): deliver without
		// credentials rather than hold every HTTP delivery on CAMS; an inbox that
		// wants some answers 401, an ordinary failed attempt retried later.
		c.log.Debug("CAMS unavailable and no credentials known for the agent: delivering without", "ai_agent_address", address)
		return nil, nil
	}
	return nil, err
}

func (c *Client) store(address string, m *mapping.Mapping) {
	// Kept even without a cache (CacheTTL 0, born expired): it is the last known
	// mapping InboxAuth falls back on while CAMS cannot answer. A full cache evicts
	// its least recently used entry: constant time, no scan under a lock.
	c.cache.Add(address, cacheEntry{m: m.Clone(), expires: c.cfg.Now().Add(c.ttlFor(m))})
}

// ShortCacheTTL is how long a mapping that is not routable (status not ACTIVE, or
// an inbox that fails ValidateInbox) is cached, when CacheTTL is longer: an
// operator's fix in CAMS (reactivating an agent, correcting its inbox) shows within
// seconds, while working ACTIVE mappings keep the full CacheTTL. 404s are never
// cached (see Client).
const ShortCacheTTL = 2 * time.Second

func (c *Client) ttlFor(m *mapping.Mapping) time.Duration {
	if m.Status == mapping.StatusActive && mapping.ValidateInbox(m.InboxDestinationType, m.InboxName) == nil {
		return c.cfg.CacheTTL
	}
	return min(c.cfg.CacheTTL, ShortCacheTTL)
}

// dropInvalidSecrets removes the signing secrets ValidateSigningSecret refuses and
// returns how many it removed.
func dropInvalidSecrets(m *mapping.Mapping) int {
	if len(m.SigningSecrets) == 0 {
		return 0
	}
	kept := m.SigningSecrets[:0:0]
	for _, s := range m.SigningSecrets {
		if mapping.ValidateSigningSecret(s) == nil {
			kept = append(kept, s)
		}
	}
	n := len(m.SigningSecrets) - len(kept)
	if len(kept) == 0 {
		kept = nil
	}
	m.SigningSecrets = kept
	return n
}

// forget drops address from the cache.
func (c *Client) forget(address string) { c.cache.Remove(address) }

func (c *Client) lookup(ctx context.Context, address string) (*mapping.Mapping, error) {
	if wait := c.partial.backingOff(address, c.cfg.Now()); wait > 0 {
		// CAMS failed for this address a moment ago while answering for others: do
		// not ask again yet, and do not involve the breaker.
		c.lookups.WithLabelValues(outcomeError).Inc()
		return nil, fmt.Errorf("%w: CAMS failed for this address while answering for others; asking again in %s: %w", ErrUnavailable, wait.Round(time.Millisecond), errAddressOnly)
	}
	ch := c.group.DoChan(address, func() (any, error) {
		return c.cb.Execute(func() (*mapping.Mapping, error) {
			m, err := c.fetch(ctx, address)
			if err != nil && errors.Is(err, ErrUnavailable) && !errors.Is(err, errClosed) && c.addressOnly(ctx, address) {
				c.addressFailures.Inc()
				wait, streak := c.partial.failed(address, c.cfg.Now(), min(maxAddressBackoff, c.cfg.BreakerOpenTimeout))
				level := slog.LevelDebug
				if streak == 1 { // once per streak: a lasting failure does not flood the log
					level = slog.LevelWarn
				}
				c.log.Log(ctx, level, "CAMS failed for one agent while answering for others: its messages wait, others flow",
					"ai_agent_address", address, "retry_in", wait.String(), "consecutive_failures", streak, "error", err)
				return nil, fmt.Errorf("%w (%w)", err, errAddressOnly)
			}
			return m, err
		})
	})
	if c.testHookJoined != nil {
		c.testHookJoined() // DoChan has registered this caller: tests count waiters
	}
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("CAMS lookup abandoned: %w", ctx.Err())
	case res := <-ch:
		err := res.Err
		switch {
		case err == nil:
			c.lookups.WithLabelValues(outcomeFound).Inc()
			return res.Val.(*mapping.Mapping).Clone(), nil // each waiter gets its own copy
		case errors.Is(err, ErrNotFound):
			c.lookups.WithLabelValues(outcomeNotFound).Inc()
			return nil, ErrNotFound
		case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
			c.lookups.WithLabelValues(outcomeBreakerOpen).Inc()
			return nil, fmt.Errorf("%w: circuit breaker is open: %w", ErrUnavailable, err)
		default:
			c.lookups.WithLabelValues(outcomeError).Inc()
			return nil, err
		}
	}
}

// inboxesPrefix is the path of one agent's mapping, the address appended escaped
// (mapping.EscapeAddress; DESIGN §4).
const inboxesPrefix = "/v1/agent-inboxes/"

// fetch sends one GET, detached from the caller's cancellation (see Client).
func (c *Client) fetch(caller context.Context, address string) (*mapping.Mapping, error) {
	// Registering under the lock Close takes keeps Add from racing with Wait.
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errClosed
	}
	c.inflight.Add(1)
	c.mu.Unlock()
	defer c.inflight.Done()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(caller), c.cfg.Timeout)
	defer cancel()
	stop := context.AfterFunc(c.closeCtx, cancel)
	defer stop()

	start := time.Now()
	// includeSecrets: the router needs the agent's signing secrets and inbox
	// credentials unmasked (DESIGN §4); other CAMS implementations ignore it.
	resp, err := c.get(ctx, inboxesPrefix+mapping.EscapeAddress(address)+"?includeSecrets=true")
	if err != nil {
		c.lookupTime.Observe(time.Since(start).Seconds())
		return nil, c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	c.lookupTime.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		var m mapping.Mapping
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("%w: undecodable mapping: %w", ErrUnavailable, err)
		}
		if ignored := dropInvalidSecrets(&m); ignored > 0 {
			// Another CAMS may not check what the reference one does (DESIGN §4):
			// a key outside 24..64 bytes is ignored, never used, never fatal.
			c.log.Warn("CAMS mapping has signing secrets that are not valid Standard Webhooks secrets (whsec_ + base64 of a 24 to 64-byte key): ignored",
				"ai_agent_address", address, "ignored", ignored, "kept", len(m.SigningSecrets))
		}
		c.store(address, &m)
		c.partial.answered(address)
		return &m, nil
	case resp.StatusCode == http.StatusNotFound:
		c.partial.answered(address)
		c.forget(address) // no last known mapping for an agent that is gone
		return nil, ErrNotFound
	default:
		// 5xx and 429 are CAMS's trouble. Other statuses (401 a wrong CAMS_API_KEY,
		// 400) are ours, but no message is at fault either: keep messages and let the
		// breaker stop the flood until an operator fixes it.
		apiErr := decodeAPIError(resp, body)
		if resp.StatusCode/100 != 5 && resp.StatusCode != http.StatusTooManyRequests {
			c.log.Error("CAMS refused the lookup: check CAMS_API_URL and CAMS_API_KEY", "status", resp.StatusCode, "error_code", apiErr.Code)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, apiErr)
	}
}

func (c *Client) transportError(ctx context.Context, err error) error {
	switch {
	case c.closeCtx.Err() != nil:
		return fmt.Errorf("%w: %w", errClosed, err)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%w: no answer within %s", ErrUnavailable, c.cfg.Timeout)
	default:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

func (c *Client) get(ctx context.Context, path string) (*http.Response, error) {
	// path is already escaped (mapping.EscapeAddress): url.Parse keeps that escaping
	// as the request's RawPath, so an address with '/' or '%' arrives as one segment.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	return c.cfg.HTTPClient.Do(req)
}

// APIError is a non-2xx answer of CAMS, decoded from its error body.
type APIError struct {
	Status  int    // HTTP status
	Code    string // errorCode of the body; "" when the body was not the contract's
	Message string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("CAMS answered %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("CAMS answered %d %s: %s", e.Status, e.Code, e.Message)
}

func decodeAPIError(resp *http.Response, body []byte) *APIError {
	e := &APIError{Status: resp.StatusCode}
	var b struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}
	if json.Unmarshal(body, &b) == nil && b.ErrorCode != "" {
		e.Code, e.Message = b.ErrorCode, b.Message
		return e
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	e.Message = msg
	if resp.StatusCode == http.StatusTooManyRequests {
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			e.Message += " (Retry-After " + ra + ")"
		}
	}
	return e
}

// errAddressOnly marks a lookup failure that concerns its address only: CAMS
// answered for another address just before or just after. The breaker excludes it.
var errAddressOnly = errors.New("CAMS answers for other addresses")

// Per-address failure handling (DESIGN §4: a CAMS failure that concerns some
// addresses only never delays routing for the others).
const (
	// minAddressBackoff doubles per consecutive address-only failure up to
	// maxAddressBackoff (and never beyond BreakerOpenTimeout), the same 250ms → 5s
	// as the router's Nak delays, so an address CAMS answers for again flows within
	// seconds.
	minAddressBackoff = 250 * time.Millisecond
	maxAddressBackoff = 5 * time.Second
	// canaryFresh is how long one check that CAMS answers for another address is
	// reused, so a burst of failing addresses costs one check.
	canaryFresh = time.Second
	// recentAnswers is how many addresses CAMS answered for lately are kept as
	// canaries; maxBackoffEntries bounds the per-address backoff table.
	recentAnswers     = 4
	maxBackoffEntries = 100_000
)

// CanaryAddress is looked up when CAMS fails for an address and no other address
// it answered for lately answers now: any answer (404 expected, 200 fine) shows
// CAMS answers for others. The .invalid name (RFC 2606) is never a real agent.
const CanaryAddress = "msgrouter-cams-canary@canary.invalid"

// addressOnly reports whether CAMS, which just failed for address, answers for
// other addresses: true when one of the addresses it answered for lately (200 or
// 404), or else CanaryAddress, gets an answer now (or did within canaryFresh).
// False when none answers: then the failure counts as CAMS's and the breaker sees
// it. The check is one GET, outside the breaker, shared by concurrent
// callers.
func (c *Client) addressOnly(ctx context.Context, address string) bool {
	now := c.cfg.Now()
	if ok, fresh := c.partial.canaryVerdict(now); fresh {
		return ok
	}
	v, _, _ := c.group.Do("\x00canary", func() (any, error) {
		if ok, fresh := c.partial.canaryVerdict(c.cfg.Now()); fresh {
			return ok, nil
		}
		ok := false
		for _, other := range append(c.partial.canaries(address), CanaryAddress) {
			if other == address {
				continue
			}
			_, err := c.fetch(ctx, other)
			if err == nil || errors.Is(err, ErrNotFound) {
				ok = true
				break
			}
			c.partial.forget(other)
			if errors.Is(err, errClosed) {
				break
			}
		}
		c.partial.setCanary(ok, c.cfg.Now())
		return ok, nil
	})
	return v.(bool)
}

// partialFailures remembers the addresses CAMS answered for lately (canaries) and
// the addresses it failed for while answering others (with their backoff).
type partialFailures struct {
	mu         sync.Mutex
	recent     []string // most recent last, distinct
	canaryAt   time.Time
	canaryOK   bool
	haveCanary bool
	backoff    map[string]addressBackoff
}

type addressBackoff struct {
	until    time.Time
	failures int
}

func (p *partialFailures) answered(address string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.backoff, address)
	for i, a := range p.recent {
		if a == address {
			p.recent = append(p.recent[:i], p.recent[i+1:]...)
			break
		}
	}
	p.recent = append(p.recent, address)
	if len(p.recent) > recentAnswers {
		p.recent = p.recent[1:]
	}
}

func (p *partialFailures) forget(address string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, a := range p.recent {
		if a == address {
			p.recent = append(p.recent[:i], p.recent[i+1:]...)
			return
		}
	}
}

// canaries returns the recent answered addresses other than failing, newest first.
func (p *partialFailures) canaries(failing string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.recent))
	for i := len(p.recent) - 1; i >= 0; i-- {
		if p.recent[i] != failing {
			out = append(out, p.recent[i])
		}
	}
	return out
}

func (p *partialFailures) canaryVerdict(now time.Time) (ok, fresh bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.haveCanary || now.Sub(p.canaryAt) >= canaryFresh || now.Before(p.canaryAt) {
		return false, false
	}
	return p.canaryOK, true
}

func (p *partialFailures) setCanary(ok bool, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.canaryOK, p.canaryAt, p.haveCanary = ok, now, true
}

// failed records an address-only failure and returns how long the address backs
// off and how many address-only failures in a row it has had.
func (p *partialFailures) failed(address string, now time.Time, ceiling time.Duration) (time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.backoff == nil {
		p.backoff = map[string]addressBackoff{}
	}
	if len(p.backoff) >= maxBackoffEntries {
		for k, b := range p.backoff {
			if !now.Before(b.until) {
				delete(p.backoff, k)
			}
		}
		if len(p.backoff) >= maxBackoffEntries {
			clear(p.backoff) // still full: forgetting backoffs only costs requests
		}
	}
	b := p.backoff[address]
	b.failures++
	wait := min(minAddressBackoff<<min(b.failures-1, 10), max(ceiling, minAddressBackoff))
	b.until = now.Add(wait)
	p.backoff[address] = b
	return wait, b.failures
}

// backingOff returns how long address still backs off, 0 when it does not.
func (p *partialFailures) backingOff(address string, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.backoff[address]
	if !ok || !now.Before(b.until) {
		return 0
	}
	return b.until.Sub(now)
}
