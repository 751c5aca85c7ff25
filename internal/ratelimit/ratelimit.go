// Package ratelimit is a set of token buckets keyed by a string (an API key name, a
// client IP, a destination), with bounded memory: at most maxKeys buckets are kept,
// the least recently used is dropped first, and a bucket idle long enough to have
// refilled is dropped as soon as it is seen, since forgetting it changes nothing.
//
// It guarantees a key never gets more than burst + rate×t events in any window t
// while its bucket is kept. A bucket evicted early by pressure from other keys
// (more than maxKeys active at once) comes back full: under that pressure a key may
// get up to one extra burst, the price of bounded memory.
package ratelimit

import (
	"container/list"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys is the bound used when New is given maxKeys <= 0.
const DefaultMaxKeys = 10_000

// Keyed is a set of limiters. A nil *Keyed, or one built with rate <= 0, allows
// everything. It is safe for concurrent use.
type Keyed struct {
	limit   rate.Limit
	burst   int
	maxKeys int
	refill  time.Duration // time an empty bucket takes to fill: idle longer = forgettable
	now     func() time.Time

	mu      sync.Mutex
	lru     *list.List // of *entry, most recently used at the front
	entries map[string]*list.Element
}

type entry struct {
	key  string
	lim  *rate.Limiter
	last time.Time
}

// Option configures a Keyed.
type Option func(*Keyed)

// WithClock replaces time.Now, so tests can move time by hand.
func WithClock(now func() time.Time) Option { return func(k *Keyed) { k.now = now } }

// New returns a limiter allowing each key r events per second with bursts of burst
// (at least 1), remembering at most maxKeys keys (DefaultMaxKeys when <= 0).
// r <= 0 means unlimited.
func New(r float64, burst, maxKeys int, opts ...Option) *Keyed {
	k := &Keyed{
		limit:   rate.Limit(r),
		burst:   max(burst, 1),
		maxKeys: maxKeys,
		now:     time.Now,
		lru:     list.New(),
		entries: make(map[string]*list.Element),
	}
	if k.maxKeys <= 0 {
		k.maxKeys = DefaultMaxKeys
	}
	if r > 0 {
		secs := float64(k.burst) / r
		if secs > math.MaxInt64/float64(time.Second) {
			k.refill = math.MaxInt64
		} else {
			k.refill = time.Duration(secs * float64(time.Second))
		}
	}
	for _, o := range opts {
		o(k)
	}
	return k
}

// Unlimited reports whether every event is allowed.
func (k *Keyed) Unlimited() bool { return k == nil || k.limit <= 0 }

// Reserve takes one event for key. When the bucket is empty it takes nothing and
// returns ok=false with how long until an event would be allowed (> 0).
func (k *Keyed) Reserve(key string) (ok bool, retryAfter time.Duration) {
	return k.ReserveN(key, 1)
}

// ReserveN takes n events for key at once (a batch of n messages counts n, DESIGN
// §2). When the bucket cannot pay min(n, burst) now it takes nothing and returns
// ok=false with how long until it could. A batch larger than the burst is allowed
// from a full bucket and leaves the rest as debt, which later events wait out, so
// over time the key still gets no more than burst + rate×t events.
func (k *Keyed) ReserveN(key string, n int) (ok bool, retryAfter time.Duration) {
	if k.Unlimited() || n <= 0 {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	e := k.get(key, now)
	first := min(n, k.burst)
	res := e.lim.ReserveN(now, first)
	if !res.OK() { // cannot happen with first <= burst; be safe
		return false, k.refill
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now) // give the tokens back: a refused batch costs nothing
		return false, d
	}
	if debt := n - first; debt > 0 {
		for rest := debt; rest > 0; rest -= min(rest, k.burst) {
			e.lim.ReserveN(now, min(rest, k.burst)) // accepted: paid back by waiting
		}
		// Not forgettable before the debt is paid and the bucket full again.
		e.last = now.Add(time.Duration(float64(debt) / float64(k.limit) * float64(time.Second)))
	}
	return true, 0
}

// get returns key's entry, creating it and evicting as needed. Called with mu held.
func (k *Keyed) get(key string, now time.Time) *entry {
	if el, found := k.entries[key]; found {
		e := el.Value.(*entry)
		e.last = now
		k.lru.MoveToFront(el)
		k.evictIdle(now)
		return e
	}
	k.evictIdle(now)
	for k.lru.Len() >= k.maxKeys {
		k.remove(k.lru.Back())
	}
	e := &entry{key: key, lim: rate.NewLimiter(k.limit, k.burst), last: now}
	k.entries[key] = k.lru.PushFront(e)
	return e
}

// evictIdle drops up to two least recently used entries idle long enough to be full
// again: amortised O(1) per call, so no sweeper goroutine is needed, and every idle
// entry goes within a few calls of becoming forgettable.
func (k *Keyed) evictIdle(now time.Time) {
	for range 2 {
		el := k.lru.Back()
		if el == nil || now.Sub(el.Value.(*entry).last) <= k.refill {
			return
		}
		k.remove(el)
	}
}

func (k *Keyed) remove(el *list.Element) {
	delete(k.entries, el.Value.(*entry).key)
	k.lru.Remove(el)
}

// Len is the number of keys remembered.
func (k *Keyed) Len() int {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lru.Len()
}
