// Package routing decides where a message goes from its agent's CAMS mapping
// (DESIGN §4): a destination, a rejection with its reason, or "try again later" when
// CAMS itself could not answer. It is pure: no I/O, table-tested.
package routing

import (
	"errors"
	"fmt"

	"github.com/msgrouter/msgrouter/internal/cams"
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
	DestType       string // cams.TypeNATSSubject or cams.TypeHTTPEndpoint when routed
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

// Decide maps a CAMS lookup result onto a Decision. lookupErr is the lookup's error:
// cams.ErrNotFound rejects; any other error is transient and returned wrapped in
// ErrTransient.
func Decide(m *cams.Mapping, lookupErr error) (Decision, error) {
	switch {
	case errors.Is(lookupErr, cams.ErrNotFound):
		return Decision{Reason: ReasonAgentNotFound, Detail: "CAMS has no mapping for this address"}, nil
	case lookupErr != nil:
		return Decision{}, fmt.Errorf("%w: %w", ErrTransient, lookupErr)
	case m == nil:
		return Decision{}, fmt.Errorf("%w: empty CAMS answer", ErrTransient)
	}
	switch m.Status {
	case cams.StatusActive:
	case cams.StatusInactive:
		if m.InactivePolicy != cams.InactivePolicyHold {
			return Decision{Reason: ReasonAgentInactive, Detail: "the agent is INACTIVE in CAMS"}, nil
		}
	default:
		return reject("unknown status %q", m.Status), nil
	}
	// The same rule as the reference CAMS's 400 (cams.ValidateInbox): CAMS may be
	// another implementation, so a system subject, the router's own subject or a
	// malformed inbox is refused here too.
	if err := cams.ValidateInbox(m.InboxDestinationType, m.InboxName); err != nil {
		return reject("%v", err), nil
	}
	return Decision{DestType: m.InboxDestinationType, DestName: m.InboxName, SigningSecrets: m.SigningSecrets,
		Hold: m.Status == cams.StatusInactive}, nil
}

func reject(format string, args ...any) Decision {
	return Decision{Reason: ReasonConfigError, Detail: fmt.Sprintf(format, args...)}
}
