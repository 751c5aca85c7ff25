package breaker

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrOpen is wrapped by Set.Allow's error when a destination's breaker refuses an
// attempt: it is open, or half-open with its one probe already in flight. Waiting
// behind it is not a delivery attempt (DESIGN §5).
var ErrOpen = errors.New("circuit breaker open")

// Outcome is what an allowed attempt reports back to its breaker.
type Outcome int

const (
	// Success closes a half-open breaker and resets the failure streak.
	Success Outcome = iota
	// Failure counts towards opening the breaker (or re-opens a half-open one).
	Failure
	// Ignore neither counts nor resets: cancellation, and failures that say
	// nothing about the destination's health (a forbidden address). It frees
	// a half-open probe slot so another probe can go.
	Ignore
)

func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Ignore:
		return "ignore"
	default:
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
}

// Settings configures a Set.
type Settings struct {
	// Failures is how many consecutive failures open a breaker
	// (BREAKER_FAILURES). Defaults to 5.
	Failures uint32
	// OpenTimeout is how long a breaker stays open before it lets one probe
	// through (BREAKER_OPEN_TIMEOUT). Defaults to 30s.
	OpenTimeout time.Duration
	// NATSOpenTimeout is the open period of NATS-subject breakers. A NATS inbox
	// fails as a whole while its stream elects a leader (no responders or PubAck
	// timeouts for a few seconds); a short open period lets deliveries resume
	// within seconds of the election instead of after a full OpenTimeout (DESIGN
	// §5, issue 9). Defaults to OpenTimeout; never above it.
	NATSOpenTimeout time.Duration
	// IdleTimeout is how long a breaker may go unused before it is dropped, so
	// the set does not grow with every destination ever seen. Defaults to
	// 10 minutes, and is never below 2×OpenTimeout so an open breaker is not
	// forgotten while its destination is still being waited on.
	IdleTimeout time.Duration
	// Metrics receives state changes; nil records nothing.
	Metrics *Metrics
	// Now is the clock of idle eviction and OpenFor. gobreaker reads the wall
	// clock itself for its own timeouts. Defaults to time.Now.
	Now func() time.Time
}

func (s Settings) withDefaults() Settings {
	if s.Failures == 0 {
		s.Failures = 5
	}
	if s.OpenTimeout <= 0 {
		s.OpenTimeout = 30 * time.Second
	}
	if s.NATSOpenTimeout <= 0 || s.NATSOpenTimeout > s.OpenTimeout {
		s.NATSOpenTimeout = s.OpenTimeout
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = 10 * time.Minute
	}
	s.IdleTimeout = max(s.IdleTimeout, 2*s.OpenTimeout)
	if s.Now == nil {
		s.Now = time.Now
	}
	return s
}

// openTimeout is the open period of a breaker with label.
func (s Settings) openTimeout(label string) time.Duration {
	if label == LabelNATS {
		return s.NATSOpenTimeout
	}
	return s.OpenTimeout
}

// Set holds one gobreaker breaker per destination key, created on first use and
// dropped when idle. It is safe for concurrent use.
//
// Metrics are labelled by destination type ("http", "nats"), never by key: keys are
// origins and subjects, as many as there are agents, and a label per key would let
// the registry grow without bound (DESIGN §9). The state gauge of a label shows the
// worst state among that type's breakers (open if any is open, else half-open if any
// is, else closed); the transitions counter counts every breaker's transitions.
type Set struct {
	st Settings

	mu        sync.Mutex // guards entries, lastSweep; never held while calling a breaker
	entries   map[string]*entry
	lastSweep time.Time

	// stateMu guards the per-label state tallies and every entry's state fields.
	// It is a leaf lock: gobreaker calls OnStateChange with its own mutex held,
	// so nothing may call into a breaker while holding stateMu.
	stateMu sync.Mutex
	tallies map[string]*[3]int // label -> number of breakers per gobreaker.State
}

type entry struct {
	cb    *gobreaker.TwoStepCircuitBreaker[struct{}]
	label string

	// guarded by Set.mu
	lastUsed time.Time
	inflight int

	// guarded by Set.stateMu
	state    gobreaker.State
	openedAt time.Time
	evicted  bool
}

// errIgnored marks an Ignore outcome for gobreaker's IsExcluded.
var errIgnored = errors.New("breaker: outcome ignored")

// errFailed marks a Failure outcome.
var errFailed = errors.New("breaker: attempt failed")

// NewSet returns an empty Set.
func NewSet(st Settings) *Set {
	st = st.withDefaults()
	s := &Set{
		st:      st,
		entries: make(map[string]*entry),
		tallies: make(map[string]*[3]int),
	}
	s.lastSweep = st.Now()
	for _, l := range []string{LabelHTTP, LabelNATS} {
		s.tallies[l] = new([3]int)
		st.Metrics.Observe(l, gobreaker.StateClosed)
	}
	return s
}

// Metric labels: one per destination type.
const (
	LabelHTTP = "http"
	LabelNATS = "nats"
)

// The destination types of the CAMS contract (cams.TypeNATSSubject and
// cams.TypeHTTPEndpoint), spelled out because the cams client depends on this
// package.
const (
	destNATSSubject = "NATS_SUBJECT"
	natsKeyPrefix   = "nats:"
)

// Key is the breaker key of a destination: "nats:"+subject for a NATS subject, the
// HTTP origin scheme://host:port (scheme and host lower-cased, default port made
// explicit) for an HTTP endpoint, so every path on one server shares one breaker. A
// URL that does not parse keys as itself: it fails alone.
func Key(destType, destName string) string {
	if destType == destNATSSubject {
		return natsKeyPrefix + destName
	}
	u, err := url.Parse(destName)
	if err != nil || u.Host == "" {
		return destName
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

func labelOf(key string) string {
	if strings.HasPrefix(key, natsKeyPrefix) {
		return LabelNATS
	}
	return LabelHTTP
}

// Allow asks key's breaker for one attempt. When it refuses, err wraps ErrOpen and
// the caller should wait (see OpenFor) without counting an attempt. Otherwise the
// caller makes the attempt and must call done exactly once with its outcome; later
// calls are no-ops.
func (s *Set) Allow(key string) (done func(Outcome), err error) {
	now := s.st.Now()
	s.mu.Lock()
	s.sweepLocked(now)
	e := s.entries[key]
	if e == nil {
		e = s.newEntry(key)
		s.entries[key] = e
	}
	e.lastUsed = now
	e.inflight++ // pins e against eviction until done
	s.mu.Unlock()

	cbDone, err := e.cb.Allow()
	if err != nil {
		s.release(e)
		return nil, fmt.Errorf("destination %s: %w (%w)", key, ErrOpen, err)
	}
	var once sync.Once
	return func(o Outcome) {
		once.Do(func() {
			switch o {
			case Success:
				cbDone(nil)
			case Failure:
				cbDone(errFailed)
			default:
				cbDone(errIgnored)
			}
			s.release(e)
		})
	}, nil
}

func (s *Set) release(e *entry) {
	now := s.st.Now()
	s.mu.Lock()
	e.inflight--
	e.lastUsed = now
	s.mu.Unlock()
}

// OpenFor hints how long to wait before asking key's breaker again after ErrOpen:
// what is left of its open period, or the whole OpenTimeout when that is unknown
// (half-open with a probe in flight: the probe's result decides).
func (s *Set) OpenFor(key string) time.Duration {
	s.mu.Lock()
	e := s.entries[key]
	s.mu.Unlock()
	if e == nil {
		return 0
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	open := s.st.openTimeout(e.label)
	if e.state != gobreaker.StateOpen {
		return open
	}
	left := open - s.st.Now().Sub(e.openedAt)
	return min(max(left, 0), open)
}

// State is key's breaker state; a key never used (or evicted) is closed.
func (s *Set) State(key string) gobreaker.State {
	s.mu.Lock()
	e := s.entries[key]
	s.mu.Unlock()
	if e == nil {
		return gobreaker.StateClosed
	}
	return e.cb.State()
}

// Len is the number of breakers held.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// newEntry builds key's breaker. Called with s.mu held; builds no state change.
func (s *Set) newEntry(key string) *entry {
	e := &entry{label: labelOf(key), state: gobreaker.StateClosed}
	failures := s.st.Failures
	e.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        key,
		MaxRequests: 1, // one probe while half-open (DESIGN §5)
		Timeout:     s.st.openTimeout(e.label),
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		// Ignore maps to an exclusion: gobreaker v2 then neither counts nor resets,
		// and the excluded request stops holding the half-open probe slot
		// (Counts.validRequests subtracts exclusions).
		IsExcluded:    func(err error) bool { return errors.Is(err, errIgnored) },
		OnStateChange: func(_ string, from, to gobreaker.State) { s.onStateChange(e, from, to) },
	})
	s.stateMu.Lock()
	s.tallies[e.label][gobreaker.StateClosed]++
	s.stateMu.Unlock()
	return e
}

// onStateChange runs under the breaker's own mutex: it must not call the breaker.
func (s *Set) onStateChange(e *entry, from, to gobreaker.State) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if e.evicted { // a late outcome on a dropped breaker: no longer tallied
		return
	}
	e.state = to
	if to == gobreaker.StateOpen {
		e.openedAt = s.st.Now()
	}
	t := s.tallies[e.label]
	t[from]--
	t[to]++
	s.st.Metrics.OnStateChange(e.label, from, to)
	s.st.Metrics.Observe(e.label, worst(t))
}

func worst(t *[3]int) gobreaker.State {
	switch {
	case t[gobreaker.StateOpen] > 0:
		return gobreaker.StateOpen
	case t[gobreaker.StateHalfOpen] > 0:
		return gobreaker.StateHalfOpen
	default:
		return gobreaker.StateClosed
	}
}

// sweepLocked drops breakers unused for IdleTimeout with no attempt in flight. It
// runs at most every IdleTimeout/2, inside Allow, so the Set needs no goroutine of
// its own. Called with s.mu held.
func (s *Set) sweepLocked(now time.Time) {
	if now.Sub(s.lastSweep) < s.st.IdleTimeout/2 {
		return
	}
	s.lastSweep = now
	changed := map[string]bool{}
	for key, e := range s.entries {
		if e.inflight > 0 || now.Sub(e.lastUsed) < s.st.IdleTimeout {
			continue
		}
		delete(s.entries, key)
		s.stateMu.Lock()
		e.evicted = true
		s.tallies[e.label][e.state]--
		changed[e.label] = true
		s.stateMu.Unlock()
	}
	s.stateMu.Lock()
	for l := range changed {
		s.st.Metrics.Observe(l, worst(s.tallies[l]))
	}
	s.stateMu.Unlock()
}
