// Package apiclient is a small typed HTTP client for msgrouter's three APIs as an
// outside caller sees them: ingest (DESIGN §2), CAMS (§4) and the router's admin API
// (§6). routerctl, its bench engine and the tests share it. It depends on the wire contract only
// (internal/message is the envelope itself, mapping.Update the CAMS write request), never on the servers' packages, so it keeps working against any implementation of
// the same API.
//
// Every non-2xx answer becomes an *Error carrying the contract's error body, so
// callers render "error: <code>: <message>" and branch on the status.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/message"
)

// Defaults of the contract.
const (
	DefaultRouterURL = "http://127.0.0.1:8081"
	DefaultIngestURL = "http://127.0.0.1:8080"
	DefaultCAMSURL   = "http://127.0.0.1:8001"
)

// Message statuses and destination types of the contract.
const (
	StatusPending      = "PENDING"
	StatusDelivered    = "DELIVERED"
	StatusRejected     = "REJECTED"
	StatusDeadLettered = "DEAD_LETTERED"

	TypeNATSSubject  = "NATS_SUBJECT"
	TypeHTTPEndpoint = "HTTP_ENDPOINT"
)

// Terminal reports whether a message status is final.
func Terminal(status string) bool {
	return status == StatusDelivered || status == StatusRejected || status == StatusDeadLettered
}

// Error is a non-2xx answer. Code and Message come from the contract's error body;
// when the body is not one (a proxy's HTML page), Code is the status text.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// Client calls the three APIs. The zero value is not usable: set the URLs (see New).
type Client struct {
	HTTP      *http.Client
	RouterURL string
	IngestURL string
	CAMSURL   string
	// APIKey is sent as "Authorization: Bearer <key>" to every API when set.
	APIKey string
}

// New returns a client with the default URLs and an HTTP client whose Transport keeps
// up to maxIdlePerHost idle connections per server (set it to the caller's
// concurrency, so a load run reuses connections instead of dialling).
func New(timeout time.Duration, maxIdlePerHost int) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(maxIdlePerHost, 2)
	tr.MaxIdleConns = max(tr.MaxIdleConnsPerHost*3, 100)
	return &Client{
		HTTP:      &http.Client{Transport: tr, Timeout: timeout},
		RouterURL: DefaultRouterURL,
		IngestURL: DefaultIngestURL,
		CAMSURL:   DefaultCAMSURL,
	}
}

// --- ingest ---

// Envelope is the body of POST /v1/messages: the contract's envelope, as ingest
// decodes it.
type Envelope = message.Envelope

// SenderMetadata is the optional sender block; empty fields are omitted.
type SenderMetadata = message.SenderMetadata

// Send submits env to ingest and returns the messageId of the 202.
func (c *Client) Send(ctx context.Context, env *Envelope) (string, error) {
	body, err := json.Marshal(env)
	if err != nil {
		return "", fmt.Errorf("error encoding the message: %w", err)
	}
	return c.SendRaw(ctx, body)
}

// SendRaw submits an already encoded envelope and returns the messageId of the 202.
func (c *Client) SendRaw(ctx context.Context, body []byte) (string, error) {
	var out struct {
		MessageID string `json:"messageId"`
	}
	if err := c.do(ctx, http.MethodPost, c.IngestURL+"/v1/messages", body, &out); err != nil {
		return "", err
	}
	return out.MessageID, nil
}

// BatchResult is one item's outcome in a batch (DESIGN §2): MessageID once it was
// accepted, or the single-message error code and text.
type BatchResult struct {
	MessageID string `json:"messageId,omitempty"`
	ErrorCode string `json:"errorCode,omitempty"`
	Message   string `json:"message,omitempty"`
}

// SendBatch submits envs (1 to 1000) in one POST /v1/messages/batch and returns one
// result per envelope, in order. An error means the request as a whole was refused
// (an *Error with its status) or not answered; items fail one by one in the results.
func (c *Client) SendBatch(ctx context.Context, envs []*Envelope) ([]BatchResult, error) {
	body, err := json.Marshal(struct {
		Messages []*Envelope `json:"messages"`
	}{envs})
	if err != nil {
		return nil, fmt.Errorf("error encoding the batch: %w", err)
	}
	return c.SendBatchRaw(ctx, body, len(envs))
}

// SendBatchRaw submits an already encoded batch body ({"messages":[…]}, DESIGN §2)
// of n items, as SendBatch does; the load tool uses it to skip re-encoding.
func (c *Client) SendBatchRaw(ctx context.Context, body []byte, n int) ([]BatchResult, error) {
	var out struct {
		Results []BatchResult `json:"results"`
	}
	if err := c.do(ctx, http.MethodPost, c.IngestURL+"/v1/messages/batch", body, &out); err != nil {
		return nil, err
	}
	if len(out.Results) != n {
		return nil, fmt.Errorf("the batch answer has %d results for %d messages", len(out.Results), n)
	}
	return out.Results, nil
}

// --- router admin API ---

// Destination is where a message goes.
type Destination struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

// Attempt is one delivery attempt in a message's history.
type Attempt struct {
	Attempt    int        `json:"attempt"`
	At         *time.Time `json:"at,omitempty"`
	Outcome    string     `json:"outcome"`
	Error      string     `json:"error,omitempty"`
	DurationMs float64    `json:"durationMs"`
}

// Message is the router's view of one message (GET /v1/messages/{id}); History is
// empty in lists.
type Message struct {
	MessageID      string       `json:"messageId"`
	AIAgentAddress string       `json:"aiAgentAddress"`
	Status         string       `json:"status"`
	Reason         string       `json:"reason,omitempty"`
	Destination    *Destination `json:"destination,omitempty"`
	Attempts       int          `json:"attempts"`
	LastError      string       `json:"lastError,omitempty"`
	ReceivedAt     *time.Time   `json:"receivedAt,omitempty"`
	DeliveredAt    *time.Time   `json:"deliveredAt,omitempty"`
	// FinishedAt is when the message reached its terminal status: this router's
	// extension of the contract, absent while PENDING and from other implementations.
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	History    []Attempt  `json:"history,omitempty"`
	// OrderingKey and ExpiresAt are the sender's metadata, when set (DESIGN §5a, §6).
	OrderingKey string     `json:"orderingKey,omitempty"`
	ExpiresAt   *time.Time `json:"expiresAt,omitempty"`
	// RawMessageBase64 is the message as received, kept when it could not be parsed
	// (REJECTED/INVALID_MESSAGE) so an operator can inspect it (DESIGN §6).
	RawMessageBase64 string `json:"rawMessageBase64,omitempty"`
}

// MessagePage is one page of GET /v1/messages.
type MessagePage struct {
	Items      []Message `json:"items"`
	NextCursor string    `json:"nextCursor,omitempty"`
}

// MessageQuery filters GET /v1/messages; zero fields are not sent.
type MessageQuery struct {
	Status         string
	AIAgentAddress string
	Limit          int
	Cursor         string
}

// GetMessage returns one message; a 404 *Error when the router has not seen it.
func (c *Client) GetMessage(ctx context.Context, id string) (*Message, error) {
	var m Message
	if err := c.do(ctx, http.MethodGet, c.RouterURL+"/v1/messages/"+url.PathEscape(id), nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// ListMessages returns one page.
func (c *Client) ListMessages(ctx context.Context, q MessageQuery) (*MessagePage, error) {
	v := url.Values{}
	set(v, "status", q.Status)
	set(v, "aiAgentAddress", q.AIAgentAddress)
	set(v, "cursor", q.Cursor)
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var p MessagePage
	if err := c.do(ctx, http.MethodGet, withQuery(c.RouterURL+"/v1/messages", v), nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Replay routes a REJECTED or DEAD_LETTERED message afresh (202). A 409 *Error for a
// message in another status, 404 for an unknown one.
func (c *Client) Replay(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, c.RouterURL+"/v1/messages/"+url.PathEscape(id)+"/replay", nil, nil)
}

// ReplayFilter selects the dead letters POST /v1/dead-letters/replay replays.
type ReplayFilter struct {
	Status         string     `json:"status,omitempty"`
	AIAgentAddress string     `json:"aiAgentAddress,omitempty"`
	Reason         string     `json:"reason,omitempty"`
	Since          *time.Time `json:"since,omitempty"`
}

// ReplayDeadLetters replays every matching message and returns how many.
func (c *Client) ReplayDeadLetters(ctx context.Context, f ReplayFilter) (int, error) {
	body, err := json.Marshal(f)
	if err != nil {
		return 0, fmt.Errorf("error encoding the filter: %w", err)
	}
	var out struct {
		Replayed int `json:"replayed"`
	}
	if err := c.do(ctx, http.MethodPost, c.RouterURL+"/v1/dead-letters/replay", body, &out); err != nil {
		return 0, err
	}
	return out.Replayed, nil
}

// --- CAMS ---

// Agent is a CAMS mapping.
type Agent struct {
	AIAgentAddress        string     `json:"aiAgentAddress"`
	InboxDestinationType  string     `json:"inboxDestinationType"`
	InboxName             string     `json:"inboxName"`
	Status                string     `json:"status,omitempty"`
	Description           string     `json:"description,omitempty"`
	OwnerTeam             string     `json:"ownerTeam,omitempty"`
	RegistrationTimestamp *time.Time `json:"registrationTimestamp,omitempty"`
	LastUpdatedTimestamp  *time.Time `json:"lastUpdatedTimestamp,omitempty"`
	UpdatedBy             string     `json:"updatedBy,omitempty"`
	InactivePolicy        string     `json:"inactivePolicy,omitempty"` // REJECT or HOLD
	// SigningSecrets and InboxAuth's secrets are "***" in CAMS answers.
	SigningSecrets []string   `json:"signingSecrets,omitempty"`
	InboxAuth      *InboxAuth `json:"inboxAuth,omitempty"`
}

// InboxAuth is the credentials an agent's HTTP inbox requires (DESIGN §4).
type InboxAuth struct {
	Type     string `json:"type"` // BEARER, HEADER or BASIC
	Token    string `json:"token,omitempty"`
	Name     string `json:"name,omitempty"`
	Value    string `json:"value,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// AgentUpdate is the body of UpdateAgent, a partial update: nil fields are left as
// they are; see mapping.Update for InboxAuth.
type AgentUpdate = mapping.Update

// AgentPage is one page of GET /v1/agent-inboxes.
type AgentPage struct {
	Items      []Agent `json:"items"`
	NextCursor string  `json:"nextCursor,omitempty"`
}

// HealthReport is the body of POST /v1/agent-health-check.
type HealthReport struct {
	AIAgentAddress string     `json:"aiAgentAddress"`
	Status         string     `json:"status"`
	Details        string     `json:"details,omitempty"`
	Timestamp      *time.Time `json:"timestamp,omitempty"`
}

func (c *Client) agentURL(addr string) string {
	return c.CAMSURL + "/v1/agent-inboxes/" + url.PathEscape(addr)
}

// GetAgent returns one mapping; a 404 *Error for an unknown address.
func (c *Client) GetAgent(ctx context.Context, addr string) (*Agent, error) {
	var a Agent
	if err := c.do(ctx, http.MethodGet, c.agentURL(addr), nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// ListAgents returns one page (limit 0 = the server's default).
func (c *Client) ListAgents(ctx context.Context, limit int, cursor string) (*AgentPage, error) {
	v := url.Values{}
	set(v, "cursor", cursor)
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var p AgentPage
	if err := c.do(ctx, http.MethodGet, withQuery(c.CAMSURL+"/v1/agent-inboxes", v), nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// CreateAgent registers a mapping (201); a 409 *Error when the address exists.
func (c *Client) CreateAgent(ctx context.Context, a *Agent) (*Agent, error) {
	body, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("error encoding the agent: %w", err)
	}
	var out Agent
	if err := c.do(ctx, http.MethodPost, c.CAMSURL+"/v1/agent-inboxes", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateAgent applies a partial update and returns the new mapping.
func (c *Client) UpdateAgent(ctx context.Context, addr string, u *AgentUpdate) (*Agent, error) {
	body, err := json.Marshal(u)
	if err != nil {
		return nil, fmt.Errorf("error encoding the update: %w", err)
	}
	var out Agent
	if err := c.do(ctx, http.MethodPut, c.agentURL(addr), body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteAgent removes a mapping (204).
func (c *Client) DeleteAgent(ctx context.Context, addr string) error {
	return c.do(ctx, http.MethodDelete, c.agentURL(addr), nil, nil)
}

// ReportHealth posts a health report; UNHEALTHY marks the agent INACTIVE.
func (c *Client) ReportHealth(ctx context.Context, r *HealthReport) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("error encoding the report: %w", err)
	}
	return c.do(ctx, http.MethodPost, c.CAMSURL+"/v1/agent-health-check", body, nil)
}

// --- plumbing ---

func set(v url.Values, k, s string) {
	if s != "" {
		v.Set(k, s)
	}
}

func withQuery(u string, v url.Values) string {
	if len(v) == 0 {
		return u
	}
	return u + "?" + v.Encode()
}

// do sends one request and decodes a 2xx body into out (when out is not nil and the
// body is not empty). Any other status is an *Error.
func (c *Client) do(ctx context.Context, method, u string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("error building the request to %s: %w", u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		// *url.Error repeats the method and the full URL; say them once.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("calling %s %s: %w", method, redact(u), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s %s: %w", method, redact(u), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return ErrorFrom(resp.StatusCode, data)
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the answer of %s %s: %w", method, redact(u), err)
	}
	return nil
}

// ErrorFrom turns a non-2xx status and body into an *Error.
func ErrorFrom(status int, body []byte) *Error {
	var eb struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}
	if json.Unmarshal(body, &eb) == nil && eb.ErrorCode != "" {
		return &Error{Status: status, Code: eb.ErrorCode, Message: eb.Message}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return &Error{Status: status, Code: "HTTP_" + strconv.Itoa(status), Message: msg}
}

// redact drops a URL's user info and query, which may carry secrets.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "the server"
	}
	p.User = nil
	p.RawQuery = ""
	return p.String()
}
