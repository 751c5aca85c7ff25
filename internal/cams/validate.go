package cams

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/msgrouter/msgrouter/internal/message"
)

// Limits the reference server enforces.
const (
	MaxTextBytes      = 1024 // description, ownerTeam, updatedBy
	MaxInboxNameBytes = 2048
	MaxDetailsBytes   = 4096 // health check details
	MaxSigningSecrets = 10
)

// ValidationError says which field of a mapping or request is wrong and why; the
// server answers it as a 400 INVALID_REQUEST.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

func invalidf(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate checks the fields a client sets: address, destination type and name,
// status, inactive policy, text lengths, signing secrets and inbox credentials. Timestamps and health are the server's.
func (m *Mapping) Validate() error {
	if err := message.ValidateAddress(m.AIAgentAddress); err != nil {
		// message's reasons already name the field.
		return &ValidationError{Field: "aiAgentAddress", Reason: strings.TrimPrefix(err.Error(), "aiAgentAddress ")}
	}
	if err := ValidateInbox(m.InboxDestinationType, m.InboxName); err != nil {
		return err
	}
	switch m.Status {
	case StatusActive, StatusInactive:
	default:
		return invalidf("status", "%q is not ACTIVE or INACTIVE", m.Status)
	}
	for _, f := range []struct{ name, v string }{{"description", m.Description}, {"ownerTeam", m.OwnerTeam}, {"updatedBy", m.UpdatedBy}} {
		if err := validateText(f.name, f.v, MaxTextBytes); err != nil {
			return err
		}
	}
	switch m.InactivePolicy {
	case InactivePolicyReject, InactivePolicyHold:
	default:
		return invalidf("inactivePolicy", "%q is not REJECT or HOLD", m.InactivePolicy)
	}
	if m.InboxAuth != nil && m.InboxDestinationType != TypeHTTPEndpoint {
		return invalidf("inboxAuth", "applies to HTTP_ENDPOINT inboxes only")
	}
	if err := ValidateInboxAuth(m.InboxAuth); err != nil {
		return err
	}
	for i, s := range m.SigningSecrets {
		if s == Masked {
			return invalidf("signingSecrets", "secret %d is %q but no secret is stored at that position to keep", i, Masked)
		}
	}
	return ValidateSigningSecrets(m.SigningSecrets)
}

func validateText(field, v string, limit int) error {
	if len(v) > limit {
		return invalidf(field, "is longer than %d bytes", limit)
	}
	if !utf8.ValidString(v) {
		return invalidf(field, "is not valid UTF-8")
	}
	return nil
}

// ValidateInbox checks that name is a valid inbox of destination type typ:
// NATS_SUBJECT takes a subject without wildcards that is not the system's own
// (ValidateSubject), HTTP_ENDPOINT an absolute http or https URL with a host. It is
// the one rule both sides apply: the reference CAMS answers 400 on it and the router
// rejects a mapping failing it as CONFIG_ERROR (DESIGN §4).
func ValidateInbox(typ, name string) error {
	if name == "" {
		return invalidf("inboxName", "is required")
	}
	if len(name) > MaxInboxNameBytes {
		return invalidf("inboxName", "is longer than %d bytes", MaxInboxNameBytes)
	}
	switch typ {
	case TypeNATSSubject:
		return ValidateSubject(name)
	case TypeHTTPEndpoint:
		return ValidateEndpoint(name)
	case "":
		return invalidf("inboxDestinationType", "is required (NATS_SUBJECT or HTTP_ENDPOINT)")
	default:
		return invalidf("inboxDestinationType", "%q is not NATS_SUBJECT or HTTP_ENDPOINT", typ)
	}
}

// ValidateSubject checks a NATS subject an agent's inbox stream captures: tokens
// separated by '.', none empty, no wildcard ('*', '>') and no whitespace or control
// character anywhere, and not a subject of the system itself (see reservedSubject).
// A wildcard is refused even inside a token: NATS treats such subjects
// inconsistently across tools, and a publish subject never needs one. The reference
// server (400) and the router's routing decision (CONFIG_ERROR) both use it, so the
// router does not depend on another CAMS implementation having checked.
func ValidateSubject(s string) error {
	if !utf8.ValidString(s) {
		return invalidf("inboxName", "is not valid UTF-8")
	}
	for i, r := range s {
		switch {
		case r == '*' || r == '>':
			return invalidf("inboxName", "NATS subject has a wildcard %q at byte %d", r, i)
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return invalidf("inboxName", "NATS subject has whitespace or a control character at byte %d", i)
		}
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return invalidf("inboxName", "NATS subject %q has an empty token", s)
		}
	}
	return reservedSubject(s)
}

// RouterSubject is the subject direct producers publish to, captured with every
// subject under it by the router's stream ROUTER_MESSAGES (DESIGN §3; the same
// value as stream.Subject, which a test checks).
const RouterSubject = "router.messages"

// reservedSubject refuses the subjects that belong to the system itself (DESIGN §4):
// a delivery there would act on NATS or on the router instead of reaching an agent.
//   - "$..." is the server's own namespace: the JetStream API ($JS.API.STREAM.PURGE.X
//     purges a stream), key-value ($KV.) and object stores ($O.), the system
//     account ($SYS.), $JS.ACK (acknowledging someone else's message), $G, $MQTT...
//   - "_INBOX" (and under it) is where request-reply answers go: publishing there
//     would answer another client's pending request, the router's own included.
//   - "router.messages" and everything under it is captured by ROUTER_MESSAGES: a
//     delivery would come back as a new message, a loop.
func reservedSubject(s string) error {
	switch first, _, _ := strings.Cut(s, "."); {
	case strings.HasPrefix(s, "$"):
		return invalidf("inboxName", "NATS subject %q is a system subject (subjects starting with $ are the NATS server's: JetStream API, KV, object store, system account)", s)
	case first == "_INBOX":
		return invalidf("inboxName", "NATS subject %q is a request-reply inbox (_INBOX.), not an agent inbox", s)
	case s == RouterSubject || strings.HasPrefix(s, RouterSubject+"."):
		return invalidf("inboxName", "NATS subject %q is the router's own (captured by stream ROUTER_MESSAGES): a delivery would loop back", s)
	}
	return nil
}

// ValidateEndpoint checks an HTTP inbox: an absolute http or https URL with a host.
func ValidateEndpoint(s string) error {
	for i, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return invalidf("inboxName", "URL has whitespace or a control character at byte %d", i)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return invalidf("inboxName", "is not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return invalidf("inboxName", "URL scheme must be http or https")
	}
	if u.Hostname() == "" {
		return invalidf("inboxName", "URL has no host")
	}
	return nil
}

// Bounds of a signing secret's decoded key, in bytes (Standard Webhooks: 24 to 64;
// DESIGN §4). A shorter key makes a forgeable HMAC.
const (
	MinSigningKeyBytes = 24
	MaxSigningKeyBytes = 64
)

// ValidateSigningSecrets checks Standard Webhooks secrets: at most
// MaxSigningSecrets, each "whsec_" followed by standard base64 whose decoded key is
// MinSigningKeyBytes to MaxSigningKeyBytes long (DESIGN §4). Errors name the
// secret by index, never by value.
func ValidateSigningSecrets(secrets []string) error {
	if len(secrets) > MaxSigningSecrets {
		return invalidf("signingSecrets", "has more than %d secrets", MaxSigningSecrets)
	}
	for i, s := range secrets {
		if err := ValidateSigningSecret(s); err != nil {
			return invalidf("signingSecrets", "secret %d %s", i, err.(*ValidationError).Reason)
		}
	}
	return nil
}

// ValidateSigningSecret checks one secret (see ValidateSigningSecrets); the
// *ValidationError's reason never contains the secret.
func ValidateSigningSecret(s string) error {
	b64, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return invalidf("signingSecrets", "does not start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) == 0 {
		return invalidf("signingSecrets", "is not whsec_ followed by base64")
	}
	if len(key) < MinSigningKeyBytes || len(key) > MaxSigningKeyBytes {
		return invalidf("signingSecrets", "decodes to a %d-byte key; Standard Webhooks keys are %d to %d bytes", len(key), MinSigningKeyBytes, MaxSigningKeyBytes)
	}
	return nil
}
