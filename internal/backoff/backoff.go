// Package backoff computes how long a failed delivery waits before its next attempt:
// exponential backoff with full jitter (DESIGN §5, DELIVERY_BACKOFF_INITIAL /
// DELIVERY_BACKOFF_MAX), and the destination's own Retry-After hint.
//
// Guarantees: Delay never returns a negative duration nor one above Max, for any
// attempt number (no overflow however large), and ParseRetryAfter never panics.
package backoff

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// Policy is an exponential backoff with full jitter.
type Policy struct {
	Initial time.Duration // the ceiling of the first retry's delay
	Max     time.Duration // no delay is longer; 0 = no cap beyond overflow safety
}

// Delay is the wait before retry number attempt (1 = the first retry): uniform in
// [0, min(Max, Initial·2^(attempt-1))]. Full jitter spreads retries of many messages
// that failed together (an inbox that was down) instead of sending them back in
// lockstep. rnd returns a float in [0, 1); nil uses math/rand/v2. Attempts below 1
// count as 1.
func (p Policy) Delay(attempt int, rnd func() float64) time.Duration {
	ceil := p.Ceiling(attempt)
	if ceil <= 0 {
		return 0
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	r := rnd()
	if r < 0 || r != r { // negative or NaN from a bad source: treat as 0
		r = 0
	}
	d := time.Duration(r * float64(ceil))
	// r*ceil can round up to ceil or, for ceil near MaxInt64, overflow the
	// conversion; both are clamped.
	if d < 0 || d > ceil {
		d = ceil
	}
	return d
}

// Ceiling is the largest delay Delay may return for attempt:
// min(Max, Initial·2^(attempt-1)), computed without overflow.
func (p Policy) Ceiling(attempt int) time.Duration {
	if p.Initial <= 0 {
		return 0
	}
	limit := p.Max
	if limit <= 0 {
		limit = maxDuration
	}
	if attempt < 1 {
		attempt = 1
	}
	shift := attempt - 1
	// Initial << shift overflows (or passes limit) as soon as Initial > limit >> shift.
	if shift >= 63 || p.Initial > limit>>shift {
		return limit
	}
	return p.Initial << shift
}

// Clamp caps a destination's own hint (Retry-After) at Max, as DESIGN §5 asks,
// and keeps it non-negative.
func (p Policy) Clamp(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	if p.Max > 0 && d > p.Max {
		return p.Max
	}
	return d
}

const maxDuration = time.Duration(1<<63 - 1)

// maxSeconds is the largest whole number of seconds a Duration holds.
const maxSeconds = int64(maxDuration / time.Second)

// ParseRetryAfter reads an HTTP Retry-After value (RFC 9110 §10.2.3): delay-seconds
// (digits only) or an HTTP-date, relative to now. ok is false for anything else
// (negative numbers, fractions, garbage), so the caller falls back to its own
// backoff. A date in the past means "now": 0, true. A number of seconds too large
// for a Duration gives the largest Duration; callers cap it with Policy.Clamp.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.Trim(v, " \t") // optional whitespace (OWS) only
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		var n int64
		for i := 0; i < len(v); i++ {
			n = n*10 + int64(v[i]-'0')
			if n > maxSeconds {
				return maxDuration, true
			}
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d = t.Sub(now) // Sub saturates instead of overflowing
	if d < 0 {
		return 0, true
	}
	return d, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
