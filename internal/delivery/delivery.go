// Package delivery sends one message to one agent inbox: a Deliverer per destination
// type (NATS subject, HTTP endpoint), the decorators an attempt goes through
// (Breaker, RateLimit, Tracing, Timeout, composed with Chain; a decorator that holds
// a delivery back returns a NotAttemptedError), the attribute headers of DESIGN §5,
// and the classification of what went wrong (retry later, retry after a hint, or
// give up). Package deliverytest is the conformance suite every Deliverer runs.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Dead-letter reasons of the contract that a Deliverer decides.
const (
	ReasonDestinationGone      = "DESTINATION_GONE"
	ReasonDestinationForbidden = "DESTINATION_FORBIDDEN"
)

// Delivery is one message on its way to one inbox.
type Delivery struct {
	MessageID       string
	AIAgentAddress  string
	DestType        string // mapping.TypeNATSSubject or mapping.TypeHTTPEndpoint
	DestName        string // subject or URL
	Payload         []byte // the payload's exact bytes
	AcceptedAt      time.Time
	SenderID        string // "" = absent
	CorrelationID   string
	SenderMessageID string
	Traceparent     string   // sent to the inbox; "" = none. Tracing takes it as its span's parent and replaces it with the span's own
	SigningSecrets  []string // per-agent whsec_ secrets; nil = the global ones
	Auth            *Auth    // the inbox's credentials (HTTP only); nil = none
}

// Deliverer delivers to one destination type. Deliver returns nil only when the
// inbox confirmed (a JetStream PubAck, an HTTP 2xx). It is safe for concurrent use:
// concurrent calls are how deliveries are pipelined.
type Deliverer interface {
	Deliver(ctx context.Context, d *Delivery) error
}

// Error is a failed attempt, classified.
type Error struct {
	// Permanent failures dead-letter at once with Reason; others are retried.
	Permanent bool
	Reason    string
	// RetryAfter is the destination's own hint (HTTP 429/503 Retry-After); 0 = none.
	RetryAfter time.Duration
	// StatusCode is the HTTP status, 0 for other failures.
	StatusCode int
	// CountsForBreaker is false for failures that say nothing about the
	// destination's health (a forbidden address refused before dialling).
	CountsForBreaker bool
	Err              error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Retryable wraps err as a failure worth retrying.
func Retryable(err error) *Error { return &Error{Err: err, CountsForBreaker: true} }

// Permanent wraps err as a failure that dead-letters at once with reason.
func Permanent(reason string, countsForBreaker bool, err error) *Error {
	return &Error{Permanent: true, Reason: reason, Err: err, CountsForBreaker: countsForBreaker}
}

// Classify returns err as an *Error; an unclassified error is retryable. Context
// cancellation is not a delivery failure: callers check ctx before Classify.
func Classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Retryable(err)
}

// ErrUnsupported is returned for a destination type no Deliverer handles.
var ErrUnsupported = errors.New("unsupported destination type")

// ByType is a Deliverer that sends each delivery with the Deliverer registered for
// its destination type (mapping.TypeNATSSubject, mapping.TypeHTTPEndpoint;
// DESIGN §4). It is not a router of messages (that is internal/router, deciding
// with internal/routing): it only picks the transport.
type ByType map[string]Deliverer

// Deliver sends d with the Deliverer of d.DestType. For a type with none it
// returns a *Error wrapping ErrUnsupported, Permanent with no reason and not
// counted by the breaker (so the dispatcher treats it as a failed attempt).
func (r ByType) Deliver(ctx context.Context, d *Delivery) error {
	del, ok := r[d.DestType]
	if !ok {
		return Permanent("", false, fmt.Errorf("%w %q", ErrUnsupported, d.DestType))
	}
	return del.Deliver(ctx, d)
}
