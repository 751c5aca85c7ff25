// Package mapping is the CAMS data model both sides share (DESIGN §4): the Mapping
// of an agent's address to its inbox, its JSON encoding, and the validation rules
// the reference CAMS answers 400 on and the router re-applies (routing.Decide
// rejects a mapping failing ValidateInbox as CONFIG_ERROR), so the router does not
// depend on another CAMS implementation having checked.
//
// It is pure: no I/O and no net/http, so internal/routing can depend on it and stay
// a table-tested decision (a test in internal/routing asserts its dependencies).
// The HTTP client is internal/cams; the reference server is internal/camsserver.
package mapping

import (
	"encoding/json"
	"errors"
	"time"
)

// ErrNotFound: CAMS has no agent registered under the address (it answered 404).
// It is the one answer that rejects a message (routing.Decide: AGENT_NOT_FOUND);
// the client (cams.ErrNotFound is this same value, as os.ErrNotExist is
// fs.ErrNotExist) returns it, and routing branches on it without importing the
// client's HTTP code.
var ErrNotFound = errors.New("agent not found")

// Destination types and statuses of the contract.
const (
	TypeNATSSubject  = "NATS_SUBJECT"
	TypeHTTPEndpoint = "HTTP_ENDPOINT"
	StatusActive     = "ACTIVE"
	StatusInactive   = "INACTIVE"
)

// Inactive policies (DESIGN §4, §5a): what the router does with a message for an
// INACTIVE agent. REJECT (the default, also when a CAMS omits the field) rejects it
// AGENT_INACTIVE; HOLD keeps it PENDING until the agent is ACTIVE again.
const (
	InactivePolicyReject = "REJECT"
	InactivePolicyHold   = "HOLD"
)

// Health check statuses (POST /v1/agent-health-check).
const (
	HealthHealthy   = "HEALTHY"
	HealthUnhealthy = "UNHEALTHY"
)

// Mapping is an agent's inbox registration, as the API encodes it. Timestamps are
// written in the contract's format (TimeFormat; zero times omitted, so a Mapping
// built for Create carries none) and read leniently, since the router only needs
// the routing fields and must not stall on another CAMS implementation's timestamp
// style.
type Mapping struct {
	AIAgentAddress        string    `json:"aiAgentAddress"`
	InboxDestinationType  string    `json:"inboxDestinationType"`
	InboxName             string    `json:"inboxName"`
	Status                string    `json:"status,omitempty"` // omitted when unset: Create then gets the default
	Description           string    `json:"description,omitempty"`
	OwnerTeam             string    `json:"ownerTeam,omitempty"`
	RegistrationTimestamp time.Time `json:"registrationTimestamp"`
	LastUpdatedTimestamp  time.Time `json:"lastUpdatedTimestamp"`
	UpdatedBy             string    `json:"updatedBy,omitempty"`
	// SigningSecrets are per-agent Standard Webhooks secrets (whsec_...), used
	// instead of DELIVERY_SIGNING_SECRETS for this agent's HTTP deliveries. An
	// extension of the contract's mapping; other CAMS implementations omit it.
	SigningSecrets []string `json:"signingSecrets,omitempty"`
	// InactivePolicy is REJECT or HOLD (DESIGN §4, §5a); "" (another CAMS that
	// omits it) means REJECT.
	InactivePolicy string `json:"inactivePolicy,omitempty"`
	// InboxAuth is the credentials the agent's HTTP inbox requires (DESIGN §4), nil
	// for none. Secret: masked in every CAMS answer except the router's lookup
	// (includeSecrets=true), never logged, never stored by the router.
	InboxAuth *InboxAuth `json:"inboxAuth,omitempty"`
	// Health is the last health report, nil before the first. An extension of the
	// contract's mapping, informational only: the router decides on Status.
	Health *Health `json:"health,omitempty"`
}

// Health is the last report of POST /v1/agent-health-check for an agent.
type Health struct {
	Status     string    `json:"status"` // HEALTHY or UNHEALTHY
	Details    string    `json:"details,omitempty"`
	ReportedAt time.Time `json:"reportedAt"` // the report's timestamp, or when CAMS received it
	// InactiveByHealthCheck is true while the agent is INACTIVE because a health
	// check made it so; only then does a HEALTHY report make it ACTIVE again.
	InactiveByHealthCheck bool `json:"inactiveByHealthCheck,omitempty"`
}

// TimeFormat is the contract's timestamp format: RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// FormatTime renders t in TimeFormat, in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

func formatOptional(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return FormatTime(t)
}

func parseLenient(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// MarshalJSON writes timestamps in TimeFormat, omitting zero ones.
func (m Mapping) MarshalJSON() ([]byte, error) {
	type fields Mapping // Mapping without its methods, so json does not recurse
	return json.Marshal(struct {
		fields
		RegistrationTimestamp string `json:"registrationTimestamp,omitempty"`
		LastUpdatedTimestamp  string `json:"lastUpdatedTimestamp,omitempty"`
	}{fields(m), formatOptional(m.RegistrationTimestamp), formatOptional(m.LastUpdatedTimestamp)})
}

// UnmarshalJSON reads a mapping; a timestamp that is not RFC 3339 is left zero
// rather than failing the whole mapping.
func (m *Mapping) UnmarshalJSON(b []byte) error {
	type fields Mapping
	var out Mapping
	j := struct {
		*fields
		RegistrationTimestamp string `json:"registrationTimestamp"`
		LastUpdatedTimestamp  string `json:"lastUpdatedTimestamp"`
	}{fields: (*fields)(&out)}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	out.RegistrationTimestamp = parseLenient(j.RegistrationTimestamp)
	out.LastUpdatedTimestamp = parseLenient(j.LastUpdatedTimestamp)
	*m = out
	return nil
}

// MarshalJSON writes ReportedAt in TimeFormat, omitted when zero.
func (h Health) MarshalJSON() ([]byte, error) {
	type fields Health // Health without its methods, so json does not recurse
	return json.Marshal(struct {
		fields
		ReportedAt string `json:"reportedAt,omitempty"`
	}{fields(h), formatOptional(h.ReportedAt)})
}

// UnmarshalJSON reads a health report; a ReportedAt that is not RFC 3339 is left
// zero.
func (h *Health) UnmarshalJSON(b []byte) error {
	type fields Health
	var out Health
	j := struct {
		*fields
		ReportedAt string `json:"reportedAt"`
	}{fields: (*fields)(&out)}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	out.ReportedAt = parseLenient(j.ReportedAt)
	*h = out
	return nil
}

// Clone returns a deep copy (secrets, credentials and health included), so a
// mapping a cache hands out cannot be changed behind the cache's back.
func (m *Mapping) Clone() *Mapping {
	c := *m
	c.SigningSecrets = append([]string(nil), m.SigningSecrets...)
	if m.InboxAuth != nil {
		a := *m.InboxAuth
		c.InboxAuth = &a
	}
	if m.Health != nil {
		h := *m.Health
		c.Health = &h
	}
	return &c
}
