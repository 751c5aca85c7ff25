package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/httpapi"
)

// maxCAMSBody caps what the router reads of a CAMS answer (a list page of 1000
// mappings fits comfortably) and of a console request body.
const (
	maxCAMSBody    = 8 << 20
	maxRequestBody = 64 << 10
)

// agents proxies the console's agent routes to CAMS (DESIGN §4) with the router's
// CAMS_API_KEY. Answers are rebuilt from an allowlist of mapping fields, so no
// secret CAMS holds (signingSecrets, inboxAuth, credentials in an inbox URL, or a
// field added later) ever reaches the browser: secrets are reported as set or not.
type agents struct {
	base   string
	key    string
	client *http.Client
	log    *slog.Logger
}

// Agent is a CAMS mapping as the console's routes show it: the contract's fields,
// with every secret replaced by whether it is set.
type Agent struct {
	AIAgentAddress        string          `json:"aiAgentAddress"`
	InboxDestinationType  string          `json:"inboxDestinationType"`
	InboxName             string          `json:"inboxName"`
	Status                string          `json:"status"`
	InactivePolicy        string          `json:"inactivePolicy,omitempty"`
	Description           string          `json:"description,omitempty"`
	OwnerTeam             string          `json:"ownerTeam,omitempty"`
	RegistrationTimestamp string          `json:"registrationTimestamp,omitempty"`
	LastUpdatedTimestamp  string          `json:"lastUpdatedTimestamp,omitempty"`
	UpdatedBy             string          `json:"updatedBy,omitempty"`
	Health                json.RawMessage `json:"health,omitempty"`
	// SigningSecretsSet and SigningSecretsCount say whether the agent has its own
	// signing secrets, and how many, never what they are.
	SigningSecretsSet   bool `json:"signingSecretsSet"`
	SigningSecretsCount int  `json:"signingSecretsCount"`
	// InboxAuthSet says whether the HTTP inbox has credentials; InboxAuthType is
	// their kind (BEARER, HEADER, BASIC), never their value.
	InboxAuthSet  bool   `json:"inboxAuthSet"`
	InboxAuthType string `json:"inboxAuthType,omitempty"`
}

// camsMapping is what the router reads of a CAMS mapping. Fields it does not name
// are dropped.
type camsMapping struct {
	AIAgentAddress        string          `json:"aiAgentAddress"`
	InboxDestinationType  string          `json:"inboxDestinationType"`
	InboxName             string          `json:"inboxName"`
	Status                string          `json:"status"`
	InactivePolicy        string          `json:"inactivePolicy"`
	Description           string          `json:"description"`
	OwnerTeam             string          `json:"ownerTeam"`
	RegistrationTimestamp string          `json:"registrationTimestamp"`
	LastUpdatedTimestamp  string          `json:"lastUpdatedTimestamp"`
	UpdatedBy             string          `json:"updatedBy"`
	SigningSecrets        []string        `json:"signingSecrets"`
	InboxAuth             json.RawMessage `json:"inboxAuth"`
	Health                *struct {
		Status                string `json:"status"`
		Details               string `json:"details,omitempty"`
		ReportedAt            string `json:"reportedAt,omitempty"`
		InactiveByHealthCheck bool   `json:"inactiveByHealthCheck,omitempty"`
	} `json:"health"`
}

// mask turns a CAMS mapping into the console's view.
func mask(m camsMapping) Agent {
	a := Agent{
		AIAgentAddress: m.AIAgentAddress, InboxDestinationType: m.InboxDestinationType,
		InboxName: stripUserinfo(m.InboxName), Status: m.Status, InactivePolicy: m.InactivePolicy,
		Description: m.Description, OwnerTeam: m.OwnerTeam, RegistrationTimestamp: m.RegistrationTimestamp,
		LastUpdatedTimestamp: m.LastUpdatedTimestamp, UpdatedBy: m.UpdatedBy,
		SigningSecretsSet: len(m.SigningSecrets) > 0, SigningSecretsCount: len(m.SigningSecrets),
	}
	if m.Health != nil {
		a.Health, _ = json.Marshal(m.Health)
	}
	if t := bytes.TrimSpace(m.InboxAuth); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		a.InboxAuthSet = true
		var typ struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(t, &typ) == nil {
			switch typ.Type {
			case "BEARER", "HEADER", "BASIC":
				a.InboxAuthType = typ.Type
			}
		}
	}
	return a
}

// stripUserinfo removes credentials from an HTTP inbox URL (DESIGN §6: credentials
// never leave the router). Anything that is not such a URL is returned as is.
func stripUserinfo(name string) string {
	u, err := url.Parse(name)
	if err != nil || u.User == nil || (u.Scheme != "http" && u.Scheme != "https") {
		return name
	}
	u.User = nil
	return u.String()
}

// call sends one request to CAMS and returns its status and body. A CAMS that cannot
// be reached, or that refuses the router's own key, is an error: the console must
// not mistake CAMS's 401 for its own admin key being wrong.
func (a *agents) call(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.key != "" {
		req.Header.Set("Authorization", "Bearer "+a.key)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("CAMS is not reachable: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxCAMSBody))
	if err != nil {
		return 0, nil, fmt.Errorf("error reading CAMS's answer: %w", err)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return 0, nil, fmt.Errorf("CAMS refused the router's key (HTTP %d): check the router's CAMS_API_KEY", resp.StatusCode)
	}
	return resp.StatusCode, b, nil
}

// relay answers the console with CAMS's answer: a 2xx body goes through convert, an
// error body keeps only its errorCode and message.
func (a *agents) relay(w http.ResponseWriter, r *http.Request, status int, body []byte, err error, convert func([]byte) (any, error)) {
	if err != nil {
		a.log.WarnContext(r.Context(), "console: CAMS call failed", slog.String("route", r.Pattern), slog.Any("error", err))
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, err.Error())
		return
	}
	if status < 200 || status > 299 {
		var e httpapi.ErrorBody
		if json.Unmarshal(body, &e) != nil || e.ErrorCode == "" {
			e = httpapi.ErrorBody{ErrorCode: httpapi.CodeUnavailable, Message: fmt.Sprintf("CAMS answered HTTP %d", status)}
		}
		if status >= 500 {
			e.Message = "CAMS failed: " + e.Message
			status = http.StatusServiceUnavailable
			e.ErrorCode = httpapi.CodeUnavailable
		}
		httpapi.WriteError(w, status, e.ErrorCode, e.Message)
		return
	}
	v, cerr := convert(body)
	if cerr != nil {
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "CAMS answered something that is not a mapping: "+cerr.Error())
		return
	}
	httpapi.WriteJSON(w, status, v)
}

func one(body []byte) (any, error) {
	var m camsMapping
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	return mask(m), nil
}

// AgentPage is the body of GET /v1/agents.
type AgentPage struct {
	Items      []Agent `json:"items"`
	NextCursor *string `json:"nextCursor"`
}

func page(body []byte) (any, error) {
	var p struct {
		Items      []camsMapping `json:"items"`
		NextCursor string        `json:"nextCursor"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, err
	}
	out := AgentPage{Items: make([]Agent, 0, len(p.Items))}
	for _, m := range p.Items {
		out.Items = append(out.Items, mask(m))
	}
	if p.NextCursor != "" {
		out.NextCursor = &p.NextCursor
	}
	return out, nil
}

func agentPath(address string) string {
	if address == "." || address == ".." {
		return "/v1/agent-inboxes/" + strings.Repeat("%2E", len(address))
	}
	return "/v1/agent-inboxes/" + url.PathEscape(address)
}

func (a *agents) list(w http.ResponseWriter, r *http.Request) {
	q := url.Values{}
	for _, k := range []string{"limit", "cursor"} {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	path := "/v1/agent-inboxes"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	status, body, err := a.call(r.Context(), http.MethodGet, path, nil)
	a.relay(w, r, status, body, err, page)
}

func (a *agents) get(w http.ResponseWriter, r *http.Request) {
	status, body, err := a.call(r.Context(), http.MethodGet, agentPath(r.PathValue("aiAgentAddress")), nil)
	a.relay(w, r, status, body, err, one)
}

func (a *agents) create(w http.ResponseWriter, r *http.Request) {
	body, ok := readObject(w, r)
	if !ok {
		return
	}
	status, out, err := a.call(r.Context(), http.MethodPost, "/v1/agent-inboxes", body)
	a.relay(w, r, status, out, err, one)
}

func (a *agents) update(w http.ResponseWriter, r *http.Request) {
	body, ok := readObject(w, r)
	if !ok {
		return
	}
	status, out, err := a.call(r.Context(), http.MethodPut, agentPath(r.PathValue("aiAgentAddress")), body)
	a.relay(w, r, status, out, err, one)
}

// readObject reads a JSON object body and, unless it names updatedBy itself, sets
// updatedBy to the name of the caller's admin key: CAMS would otherwise record the
// router's own key as the author of every console change.
func readObject(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			httpapi.WriteError(w, http.StatusRequestEntityTooLarge, httpapi.CodePayloadTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxRequestBody))
			return nil, false
		}
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "error reading the body")
		return nil, false
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "the body must be a JSON object")
		return nil, false
	}
	if _, given := obj["updatedBy"]; !given {
		if c := auth.CallerFrom(r.Context()); c.Named {
			obj["updatedBy"], _ = json.Marshal(c.Name)
			b, _ = json.Marshal(obj)
		}
	}
	return b, true
}
