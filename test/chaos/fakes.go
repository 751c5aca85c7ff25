package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

// switchable is an HTTP server on a fixed loopback port that can be taken down (the
// listener and every connection closed, so clients get "connection refused") and
// brought back on the same port.
type switchable struct {
	handler http.Handler
	addr    string

	mu   sync.Mutex
	srv  *http.Server
	done chan struct{}
}

func newSwitchable(h http.Handler) (*switchable, error) {
	s := &switchable{handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("error listening on loopback: %w", err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	return s, nil
}

func (s *switchable) serve(ln net.Listener) {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	s.srv, s.done = srv, done
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
}

// up listens again on the same port (a no-op when already up).
func (s *switchable) up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	// Go listeners set SO_REUSEADDR, so connections in TIME_WAIT do not block the bind.
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("error listening again on %s: %w", s.addr, err)
	}
	s.serve(ln)
	return nil
}

// set brings the server up or takes it down.
func (s *switchable) set(up bool) error {
	if !up {
		s.down()
		return nil
	}
	return s.up()
}

// down closes the listener and every open connection.
func (s *switchable) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	_ = s.srv.Close()
	<-s.done
	s.srv = nil
}

// CAMSMode is what the fake CAMS does with a lookup.
type CAMSMode int32

// The fake CAMS's modes.
const (
	CAMSUp          CAMSMode = iota // answers from its registry
	CAMSRefused                     // listener closed: connection refused
	CAMSUnavailable                 // answers 503
)

// fakeCAMS serves GET /v1/agent-inboxes/{address} from a fixed registry: the router
// only reads CAMS.
type fakeCAMS struct {
	sw       *switchable
	mode     atomic.Int32
	lookups  atomic.Int64
	mu       sync.Mutex
	mappings map[string]mapping.Mapping
	sick     map[string]bool // addresses answered 500 (setSick)
}

func newFakeCAMS() (*fakeCAMS, error) {
	c := &fakeCAMS{mappings: map[string]mapping.Mapping{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/agent-inboxes/{address}", c.get)
	sw, err := newSwitchable(mux)
	if err != nil {
		return nil, err
	}
	c.sw = sw
	return c, nil
}

func (c *fakeCAMS) url() string { return "http://" + c.sw.addr }

func (c *fakeCAMS) register(address, destType, inbox string) {
	now := time.Now().UTC()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mappings[address] = mapping.Mapping{
		AIAgentAddress: address, InboxDestinationType: destType, InboxName: inbox, Status: mapping.StatusActive,
		RegistrationTimestamp: now, LastUpdatedTimestamp: now, UpdatedBy: "chaos",
	}
}

// setMode switches the fake; CAMSRefused closes the listener, the others open it.
func (c *fakeCAMS) setMode(m CAMSMode) error {
	c.mode.Store(int32(m))
	return c.sw.set(m != CAMSRefused)
}

func (c *fakeCAMS) get(w http.ResponseWriter, r *http.Request) {
	c.lookups.Add(1)
	if CAMSMode(c.mode.Load()) == CAMSUnavailable {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "chaos: CAMS is down")
		return
	}
	c.mu.Lock()
	m, ok := c.mappings[r.PathValue("address")]
	sick := c.sick[r.PathValue("address")]
	c.mu.Unlock()
	if sick {
		writeError(w, http.StatusInternalServerError, "INTERNAL", "chaos: failing for this address")
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no such agent")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(m)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"errorCode": code, "message": msg})
}

// InboxMode is how a fake HTTP inbox answers.
type InboxMode int32

// The fake inbox's modes.
const (
	InboxOK     InboxMode = iota // 200, the delivery is recorded
	InboxDown                    // listener closed: connection refused
	InboxHang                    // never answers until restored (or the client gives up)
	InboxErrors                  // a mix of 500, 429 with Retry-After, and 200
)

// arrivals counts deliveries per messageId and keeps the first body of each.
type arrivals struct {
	mu     sync.Mutex
	counts map[string]int
	bodies map[string][]byte
	noID   int      // deliveries without a messageId header: a contract violation
	order  orderLog // first arrivals of keyed messages, per key (ordered.go)
}

func newArrivals() *arrivals {
	return &arrivals{counts: map[string]int{}, bodies: map[string][]byte{}}
}

func (a *arrivals) record(id string, body []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if id == "" {
		a.noID++
		return
	}
	a.counts[id]++
	if a.counts[id] == 1 {
		a.bodies[id] = body
		a.order.note(body)
	}
}

func (a *arrivals) get(id string) (int, []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counts[id], a.bodies[id]
}

// httpInbox is an agent's HTTP endpoint that records what it is given and can be
// made to fail in the ways real endpoints do.
type httpInbox struct {
	sw       *switchable
	mode     atomic.Int32
	arrivals *arrivals
	requests atomic.Int64
	// abandoned counts requests the client gave up on while the inbox hung.
	abandoned atomic.Int64

	mu      sync.Mutex
	release chan struct{} // closed when a hang ends
}

func newHTTPInbox() (*httpInbox, error) {
	in := &httpInbox{arrivals: newArrivals(), release: make(chan struct{})}
	sw, err := newSwitchable(http.HandlerFunc(in.serve))
	if err != nil {
		return nil, err
	}
	in.sw = sw
	return in, nil
}

func (in *httpInbox) url() string { return "http://" + in.sw.addr + "/inbox" }

func (in *httpInbox) setMode(m InboxMode) error {
	in.mu.Lock()
	prev := InboxMode(in.mode.Swap(int32(m)))
	if prev == InboxHang && m != InboxHang {
		close(in.release)
		in.release = make(chan struct{})
	}
	in.mu.Unlock()
	return in.sw.set(m != InboxDown)
}

func (in *httpInbox) serve(w http.ResponseWriter, r *http.Request) {
	in.requests.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return // the client went away
	}
	switch InboxMode(in.mode.Load()) {
	case InboxHang:
		in.mu.Lock()
		release := in.release
		in.mu.Unlock()
		select {
		case <-release:
		case <-r.Context().Done():
			in.abandoned.Add(1)
			return // the router gave up (DELIVERY_TIMEOUT): no answer, not delivered
		}
	case InboxErrors:
		switch n := rand.IntN(10); {
		case n < 4:
			writeError(w, http.StatusInternalServerError, "INTERNAL", "chaos: failing")
			return
		case n < 7:
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "RATE_LIMITED", "chaos: slow down")
			return
		}
	}
	if InboxMode(in.mode.Load()) == InboxOK && failKeyed(body) {
		writeError(w, http.StatusInternalServerError, "INTERNAL", "chaos: failing a keyed delivery")
		return
	}
	if r.Context().Err() != nil {
		return
	}
	in.arrivals.record(r.Header.Get("X-Message-Id"), body)
	w.WriteHeader(http.StatusOK)
}
