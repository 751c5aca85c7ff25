package delivery

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/msgrouter/msgrouter/internal/backoff"
)

// HTTPConfig configures the HTTP Deliverer.
type HTTPConfig struct {
	// Timeout bounds one attempt, connection and response included
	// (DELIVERY_TIMEOUT); a shorter ctx deadline wins. Defaults to 10s.
	Timeout time.Duration
	// AllowPrivateNetworks lets deliveries reach loopback, private, link-local
	// and metadata addresses (DELIVERY_ALLOW_PRIVATE_NETWORKS). Defaults to false.
	AllowPrivateNetworks bool
	// SigningSecrets are the global whsec_ secrets (DELIVERY_SIGNING_SECRETS); a
	// Delivery's own SigningSecrets replace them. Defaults to none: unsigned.
	SigningSecrets []string
	// SystemAddrs are the "host:port" addresses of the system's own HTTP services
	// (the router's admin API, CAMS_API_URL's origin, pprof) that an agent inbox
	// must never reach (DESIGN §4: a delivery never reaches the system itself),
	// refused at dial time as DESTINATION_FORBIDDEN even with AllowPrivateNetworks.
	// A host that is empty, unspecified, loopback or one of this machine's own
	// addresses stands for every local address at that port; a name is resolved
	// once, at NewHTTP. Port 0 entries are ignored.
	SystemAddrs []string
	// MaxIdleConnsPerHost is the keep-alive pool per destination. Defaults to 64.
	MaxIdleConnsPerHost int
	// Now is the clock of webhook-timestamp. Defaults to time.Now.
	Now func() time.Time
}

// Response body limits: the first errorBodyLimit bytes are kept for the error
// text; up to drainLimit more are read so the connection can be reused, and a
// larger body costs the connection rather than our time.
const (
	errorBodyLimit = 4 << 10
	drainLimit     = 64 << 10
)

// HTTP delivers to HTTP_ENDPOINT inboxes with a POST: success is any 2xx.
type HTTP struct {
	// transport is called directly, not through an http.Client: redirects are
	// never followed and there is no cookie jar, so all a Client would add per
	// request is a copy of the header map (kept for redirects) and a timer.
	// Deliver does what is left of Client.Do itself (the url.Error wrapping and
	// Basic auth from the URL's userinfo), so errors and requests are the same.
	transport *http.Transport
	cfg       HTTPConfig
	keys      [][]byte // decoded global signing secrets
	agentKeys keyCache // decoded per-agent signing secrets
	dials     atomic.Uint64
}

// NewHTTP returns the HTTP Deliverer. It fails only on an invalid signing secret.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	cfg.MaxIdleConnsPerHost = cmp.Or(cfg.MaxIdleConnsPerHost, 64)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	keys, err := parseSecrets(cfg.SigningSecrets)
	if err != nil {
		return nil, fmt.Errorf("DELIVERY_SIGNING_SECRETS: %w", err)
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
	h := &HTTP{cfg: cfg, keys: keys}
	self := systemAddrs(cfg.SystemAddrs)
	dialer.Control = func(network, address string, c syscall.RawConn) error {
		if ap, err := netip.ParseAddrPort(address); err == nil && self[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] {
			return fmt.Errorf("%w: %s is one of the system's own services (router, CAMS)", ErrForbiddenAddress, address)
		}
		if !cfg.AllowPrivateNetworks {
			if err := guardControl(network, address, c); err != nil {
				return err
			}
		}
		h.dials.Add(1)
		return nil
	}
	h.transport = &http.Transport{
		// No proxy, whatever HTTP_PROXY says: a proxy would dial the destination
		// itself, out of reach of the address guard.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true, // a custom DialContext turns HTTP/2 off otherwise
		MaxIdleConns:          0,    // no global cap: the per-host cap bounds each inbox
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		ExpectContinueTimeout: time.Second,
	}
	// Redirects are never followed (DESIGN §5): a 3xx is a failed attempt, and
	// following one could lead anywhere (a classic SSRF path). The transport
	// returns a 3xx as it came.
	return h, nil
}

// Dials reports how many connections the Deliverer has dialled (attempts that
// passed the address guard), for tests and diagnostics: with keep-alive working,
// it stays at about the number of concurrent requests per inbox host, not the
// number of deliveries.
func (h *HTTP) Dials() uint64 { return h.dials.Load() }

// systemAddrs expands SystemAddrs into the addresses to refuse (see HTTPConfig).
func systemAddrs(addrs []string) map[netip.AddrPort]bool {
	out := map[netip.AddrPort]bool{}
	var local []netip.Addr
	if ifs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				local = append(local, p.Addr().Unmap())
			}
		}
	}
	local = append(local, netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback())
	isLocal := func(a netip.Addr) bool {
		if a.IsLoopback() || a.IsUnspecified() {
			return true
		}
		for _, l := range local {
			if l == a {
				return true
			}
		}
		return false
	}
	for _, hp := range addrs {
		host, portText, err := net.SplitHostPort(hp)
		if err != nil {
			continue
		}
		port, err := strconv.ParseUint(portText, 10, 16)
		if err != nil || port == 0 {
			continue
		}
		var ips []netip.Addr
		if host == "" {
			ips = []netip.Addr{netip.IPv4Unspecified()}
		} else if a, err := netip.ParseAddr(host); err == nil {
			ips = []netip.Addr{a.Unmap()}
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			found, _ := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			cancel()
			for _, a := range found {
				ips = append(ips, a.Unmap())
			}
		}
		for _, a := range ips {
			if isLocal(a) {
				for _, l := range local {
					out[netip.AddrPortFrom(l, uint16(port))] = true
				}
			}
			out[netip.AddrPortFrom(a, uint16(port))] = true
		}
	}
	return out
}

// OriginAddr returns the host:port an absolute http(s) URL dials (the scheme's
// default port when none is given), "" when it does not parse.
func OriginAddr(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// Close drops the idle keep-alive connections.
func (h *HTTP) Close() { h.transport.CloseIdleConnections() }

// Deliver POSTs d's payload to d.DestName with the attribute headers, signed when
// secrets are configured. The returned *Error classifies a failure: 410 is
// Permanent (DESTINATION_GONE), a forbidden address is Permanent
// (DESTINATION_FORBIDDEN) and does not count for the breaker, 429/503 carry their
// Retry-After, everything else is retryable.
func (h *HTTP) Deliver(ctx context.Context, d *Delivery) error {
	keys := h.keys
	if d.SigningSecrets != nil {
		k, err := h.agentKeys.parse(d.SigningSecrets)
		if err != nil {
			// Never sent unsigned: the receiver would have to reject it. Retryable,
			// not counted against the destination: the secrets are looked up again
			// for each attempt, so fixing them in CAMS lets the message through;
			// otherwise it dead-letters as MAX_ATTEMPTS_EXCEEDED with this error.
			e := Retryable(fmt.Errorf("agent %s signing secrets: %w", d.AIAgentAddress, err))
			e.CountsForBreaker = false
			return e
		}
		keys = k
	}

	// One timer per attempt is enough: when the caller's deadline is already at
	// least as near (the dispatcher's delivery.Timeout), it is the bound.
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > h.cfg.Timeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.DestName, bytes.NewReader(d.Payload))
	// Routing rejects such inboxes first (CONFIG_ERROR); should one get here, it is
	// refused like a forbidden address: nothing is sent, and of the contract's
	// dead-letter reasons DESTINATION_FORBIDDEN is the one that fits.
	if err != nil {
		return Permanent(ReasonDestinationForbidden, false, fmt.Errorf("invalid inbox URL: %w", err))
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return Permanent(ReasonDestinationForbidden, false, fmt.Errorf("invalid inbox URL: scheme %q is not http or https", req.URL.Scheme))
	}
	req.Header = HTTPHeader(d)
	if len(keys) > 0 {
		ts := h.cfg.Now().Unix()
		req.Header[HTTPHeaderWebhookTimestamp] = []string{strconv.FormatInt(ts, 10)}
		req.Header[HTTPHeaderWebhookSignature] = []string{sign(keys, d.MessageID, ts, d.Payload)}
	}
	if a := d.Auth; a != nil {
		if err := a.check(req.Header); err != nil {
			// Like invalid signing secrets: nothing is sent, the attempt fails
			// without counting against the inbox, and a fix in CAMS applies to the
			// next attempt (credentials are looked up for each).
			e := Retryable(fmt.Errorf("agent %s inboxAuth: %w", d.AIAgentAddress, err))
			e.CountsForBreaker = false
			return e
		}
		req.Header.Set(a.Header, a.Value)
	}

	// What http.Client.send adds: Basic auth from the URL's userinfo, unless an
	// Authorization header is set already.
	if u := req.URL.User; u != nil && len(req.Header["Authorization"]) == 0 {
		password, _ := u.Password()
		req.SetBasicAuth(u.Username(), password)
	}

	resp, err := h.transport.RoundTrip(req)
	if err != nil {
		// As http.Client.Do reports it: "Post \"<url>\": <err>", password hidden.
		return h.classifyTransport(ctx, &url.Error{Op: "Post", URL: stripPassword(req.URL), Err: err})
	}
	defer resp.Body.Close()

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
		return nil
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)

	err = &StatusError{StatusCode: resp.StatusCode, Body: cleanText(snippet), Location: cleanText([]byte(truncate(resp.Header.Get("Location"), 512))), AuthSent: d.Auth != nil}
	switch resp.StatusCode {
	case http.StatusGone:
		e := Permanent(ReasonDestinationGone, true, err)
		e.StatusCode = resp.StatusCode
		return e
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		e := Retryable(err)
		e.StatusCode = resp.StatusCode
		if ra, ok := backoff.ParseRetryAfter(resp.Header.Get("Retry-After"), h.cfg.Now()); ok {
			e.RetryAfter = ra
		}
		return e
	default:
		e := Retryable(err)
		e.StatusCode = resp.StatusCode
		return e
	}
}

// classifyTransport classifies an error before any response: a refused address,
// cancellation, a timeout or a connection error.
func (h *HTTP) classifyTransport(ctx context.Context, err error) error {
	if errors.Is(err, ErrForbiddenAddress) {
		return Permanent(ReasonDestinationForbidden, false, err)
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return err // not a failed attempt; the caller sees context.Canceled
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return Retryable(fmt.Errorf("timeout: %w", err))
	}
	return Retryable(err)
}

// Auth is the credentials an agent's HTTP inbox requires (DESIGN §4 inboxAuth), as
// the header that carries them. Err, when set, is why the agent's credentials could
// not be used (invalid in CAMS): the attempt then fails without sending anything.
// The value is a secret: it is never part of an error, a log or a record.
type Auth struct {
	Header string
	Value  string
	Err    error
}

// check refuses credentials that are invalid or would replace a header the router
// sets itself (the reference CAMS refuses those with a 400; another CAMS may not).
func (a *Auth) check(set http.Header) error {
	switch {
	case a.Err != nil:
		return a.Err
	case a.Header == "" || a.Value == "":
		return errors.New("empty credentials")
	case len(set.Values(a.Header)) > 0 || strings.HasPrefix(http.CanonicalHeaderKey(a.Header), "Webhook-"):
		return fmt.Errorf("header %q is one the router sets itself", a.Header)
	}
	return nil
}

// StatusError is a non-2xx answer from an inbox.
type StatusError struct {
	StatusCode int
	Body       string // the start of the response body, for the attempt log
	Location   string // a redirect's target, which is not followed
	AuthSent   bool   // the request carried the agent's inboxAuth credentials
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("inbox answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden {
		// A failed attempt like any other (retried, then dead-lettered), with a
		// lastError that says what to fix (issue 15).
		if e.AuthSent {
			msg += " (the inbox refused the credentials: check the agent's inboxAuth in CAMS)"
		} else {
			msg += " (the inbox refused the request without credentials: set the agent's inboxAuth in CAMS)"
		}
	}
	if e.StatusCode >= 300 && e.StatusCode < 400 {
		msg += " (redirects are not followed"
		if e.Location != "" {
			msg += ": " + e.Location
		}
		msg += ")"
	}
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// cleanText makes a response body snippet safe for an error text stored in
// Postgres and logs: valid UTF-8, no NUL or other control characters but spaces.
func cleanText(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case r < 0x20 || r == 0x7f:
			return -1
		}
		return r
	}, s)
	// A rune split by the errorBodyLimit cut was replaced by ToValidUTF8.
	return strings.TrimSpace(s)
}

// stripPassword is net/http's (client.go): the URL with its password, if any,
// replaced by "***", as http.Client puts it in its errors.
func stripPassword(u *url.URL) string {
	if pass, ok := u.User.Password(); ok {
		return strings.Replace(u.String(), pass+"@", "***@", 1)
	}
	return u.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
