package cams

import (
	"encoding/json"
	"time"
)

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

// Mapping is an agent's inbox registration, as the API encodes it.
type Mapping struct {
	AIAgentAddress        string    `json:"aiAgentAddress"`
	InboxDestinationType  string    `json:"inboxDestinationType"`
	InboxName             string    `json:"inboxName"`
	Status                string    `json:"status"`
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

// mappingJSON is Mapping with its timestamps as strings: written in the contract's
// format (zero times omitted, so a Mapping built for Create carries none), and read
// leniently, since the router only needs the routing fields and must not stall on
// another CAMS implementation's timestamp style.
type mappingJSON struct {
	AIAgentAddress        string      `json:"aiAgentAddress"`
	InboxDestinationType  string      `json:"inboxDestinationType"`
	InboxName             string      `json:"inboxName"`
	Status                string      `json:"status,omitempty"` // omitted when unset: Create then gets the default
	Description           string      `json:"description,omitempty"`
	OwnerTeam             string      `json:"ownerTeam,omitempty"`
	RegistrationTimestamp string      `json:"registrationTimestamp,omitempty"`
	LastUpdatedTimestamp  string      `json:"lastUpdatedTimestamp,omitempty"`
	UpdatedBy             string      `json:"updatedBy,omitempty"`
	SigningSecrets        []string    `json:"signingSecrets,omitempty"`
	InactivePolicy        string      `json:"inactivePolicy,omitempty"`
	InboxAuth             *InboxAuth  `json:"inboxAuth,omitempty"`
	Health                *healthJSON `json:"health,omitempty"`
}

type healthJSON struct {
	Status                string `json:"status"`
	Details               string `json:"details,omitempty"`
	ReportedAt            string `json:"reportedAt,omitempty"`
	InactiveByHealthCheck bool   `json:"inactiveByHealthCheck,omitempty"`
}

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

// MarshalJSON writes timestamps as RFC 3339 UTC with milliseconds.
func (m Mapping) MarshalJSON() ([]byte, error) {
	j := mappingJSON{
		AIAgentAddress: m.AIAgentAddress, InboxDestinationType: m.InboxDestinationType,
		InboxName: m.InboxName, Status: m.Status, Description: m.Description, OwnerTeam: m.OwnerTeam,
		RegistrationTimestamp: formatOptional(m.RegistrationTimestamp),
		LastUpdatedTimestamp:  formatOptional(m.LastUpdatedTimestamp),
		UpdatedBy:             m.UpdatedBy, SigningSecrets: m.SigningSecrets,
		InactivePolicy: m.InactivePolicy, InboxAuth: m.InboxAuth,
	}
	if h := m.Health; h != nil {
		j.Health = &healthJSON{Status: h.Status, Details: h.Details, ReportedAt: formatOptional(h.ReportedAt), InactiveByHealthCheck: h.InactiveByHealthCheck}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads a mapping; a timestamp that is not RFC 3339 is left zero
// rather than failing the whole mapping.
func (m *Mapping) UnmarshalJSON(b []byte) error {
	var j mappingJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*m = Mapping{
		AIAgentAddress: j.AIAgentAddress, InboxDestinationType: j.InboxDestinationType,
		InboxName: j.InboxName, Status: j.Status, Description: j.Description, OwnerTeam: j.OwnerTeam,
		RegistrationTimestamp: parseLenient(j.RegistrationTimestamp),
		LastUpdatedTimestamp:  parseLenient(j.LastUpdatedTimestamp),
		UpdatedBy:             j.UpdatedBy, SigningSecrets: j.SigningSecrets,
		InactivePolicy: j.InactivePolicy, InboxAuth: j.InboxAuth,
	}
	if h := j.Health; h != nil {
		m.Health = &Health{Status: h.Status, Details: h.Details, ReportedAt: parseLenient(h.ReportedAt), InactiveByHealthCheck: h.InactiveByHealthCheck}
	}
	return nil
}

// clone returns a deep copy, so a cached mapping handed to callers cannot be changed
// behind the cache's back.
func (m *Mapping) clone() *Mapping {
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
