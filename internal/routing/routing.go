// Package routing decides where a message goes from its agent's CAMS mapping
// (DESIGN §4): a destination, a hold, a rejection with its reason, or "try again
// later" when CAMS itself could not answer. It is pure: no I/O of its own (the
// lookup is the caller's), table-tested. Every place that routes decides here: the
// takeover (first routing), the dispatcher's check of a retry's agent and its
// routing of a replayed message afresh (DESIGN §5, §5a).
package routing

import (
	"context"
	"errors"
	"fmt"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

// Rejection reasons of the contract.
const (
	ReasonAgentNotFound  = "AGENT_NOT_FOUND"
	ReasonAgentInactive  = "AGENT_INACTIVE"
	ReasonConfigError    = "CONFIG_ERROR"
	ReasonInvalidMessage = "INVALID_MESSAGE"
)

// Decision is where a message goes, or why it does not.
type Decision struct {
	DestType       string // mapping.TypeNATSSubject or mapping.TypeHTTPEndpoint when routed
	DestName       string
	SigningSecrets []string
	Reason         string // non-empty when rejected
	Detail         string // human explanation of a rejection
	// Hold is true when the agent is INACTIVE with inactivePolicy HOLD: the
	// message is routed to its inbox but waits, unattempted, until the agent is
	// ACTIVE again (DESIGN §5a; the outbox dispatcher holds it).
	Hold bool
}

// Rejected reports whether the message is rejected for good.
func (d Decision) Rejected() bool { return d.Reason != "" }

// ErrTransient wraps lookup failures that say nothing about the agent (CAMS down,
// slow, 5xx): the message must wait and be routed again later.
var ErrTransient = errors.New("agent lookup failed transiently")

// Lookup looks an agent up in CAMS: its mapping, an error wrapping
// mapping.ErrNotFound when CAMS has none, or another error when CAMS could not
// answer.
type Lookup func(ctx context.Context, address string) (*mapping.Mapping, error)

// Route looks address up with lookup and decides where its messages go (Decide
// over the answer). A transient error wraps ErrTransient and the lookup's error
// (context.Canceled included, for errors.Is).
func Route(ctx context.Context, lookup Lookup, address string) (Decision, error) {
	m, err := lookup(ctx, address)
	return Decide(m, err)
}

// Held reports whether a lookup's answer puts the agent's messages on hold: the
// agent is INACTIVE with inactivePolicy HOLD (DESIGN §5a). Decide's Decision.Hold
// is Held with a valid inbox (an invalid one rejects, held or not).
func Held(m *mapping.Mapping, lookupErr error) bool {
	return lookupErr == nil && m != nil && m.Status == mapping.StatusInactive && m.InactivePolicy == mapping.InactivePolicyHold
}

// Decide maps a CAMS lookup result onto a Decision. lookupErr is the lookup's error:
// mapping.ErrNotFound rejects; any other error is transient and returned wrapped in
// ErrTransient.
func Decide(m *mapping.Mapping, lookupErr error) (Decision, error) {
	switch {
	case errors.Is(lookupErr, mapping.ErrNotFound):
		return Decision{Reason: ReasonAgentNotFound, Detail: "CAMS has no mapping for this address"}, nil
	case lookupErr != nil:
		return Decision{}, fmt.Errorf("%w: %w", ErrTransient, lookupErr)
	case m == nil:
		return Decision{}, fmt.Errorf("%w: empty CAMS answer", ErrTransient)
	}
	switch m.Status {
	case mapping.StatusActive:
	case mapping.StatusInactive:
		if !Held(m, nil) {
			return Decision{Reason: ReasonAgentInactive, Detail: "the agent is INACTIVE in CAMS"}, nil
		}
	default:
		return reject("unknown status %q", m.Status), nil
	}
	// The same rule as the reference CAMS's 400 (mapping.ValidateInbox): CAMS may be
	// another implementation, so a system subject, the router's own subject or a
	// malformed inbox is refused here too.
	if err := mapping.ValidateInbox(m.InboxDestinationType, m.InboxName); err != nil {
		return reject("%v", err), nil
	}
	return Decision{DestType: m.InboxDestinationType, DestName: m.InboxName, SigningSecrets: m.SigningSecrets,
		Hold: Held(m, nil)}, nil
}

func reject(format string, args ...any) Decision {
	return Decision{Reason: ReasonConfigError, Detail: fmt.Sprintf(format, args...)}
}
