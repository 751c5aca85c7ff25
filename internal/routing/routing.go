// Package routing decides where a message goes from its agent's CAMS mapping
// (DESIGN §4): a destination, a rejection with its reason, or "try again later" when
// CAMS itself could not answer. It is pure: no I/O, table-tested.
package routing

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"

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
		if m.InactivePolicy != cams.InactiveHold {
			return Decision{Reason: ReasonAgentInactive, Detail: "the agent is INACTIVE in CAMS"}, nil
		}
	default:
		return reject("unknown status %q", m.Status), nil
	}
	switch m.InboxDestinationType {
	case cams.TypeNATSSubject:
		if err := ValidSubject(m.InboxName); err != nil {
			return reject("inboxName: %v", err), nil
		}
	case cams.TypeHTTPEndpoint:
		if err := ValidURL(m.InboxName); err != nil {
			return reject("inboxName: %v", err), nil
		}
	default:
		return reject("unknown inboxDestinationType %q", m.InboxDestinationType), nil
	}
	return Decision{DestType: m.InboxDestinationType, DestName: m.InboxName, SigningSecrets: m.SigningSecrets,
		Hold: m.Status == cams.StatusInactive}, nil
}

func reject(format string, args ...any) Decision {
	return Decision{Reason: ReasonConfigError, Detail: fmt.Sprintf(format, args...)}
}

// ValidSubject checks a publish subject: dot-separated non-empty tokens, no
// wildcards, no whitespace or control characters.
func ValidSubject(s string) error {
	if s == "" {
		return errors.New("subject is empty")
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return fmt.Errorf("subject %q has an empty token", s)
		}
		if tok == "*" || tok == ">" {
			return fmt.Errorf("subject %q has a wildcard", s)
		}
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("subject %q has whitespace or a control character", s)
		}
	}
	return nil
}

// ValidURL checks an absolute http or https URL with a host.
func ValidURL(s string) error {
	if s == "" {
		return errors.New("URL is empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("URL %q does not parse", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL %q is not http or https", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("URL %q has no host", s)
	}
	return nil
}
