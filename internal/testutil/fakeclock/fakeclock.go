// Package fakeclock is a hand-moved time source for tests of code that takes a
// clock function (a rate limiter's or a cache's Now): time passes only when the
// test says so.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a time that moves only by Advance. Safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock standing at start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
