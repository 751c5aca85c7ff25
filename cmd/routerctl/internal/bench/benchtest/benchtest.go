// Package benchtest fakes a running msgrouter for tests of its outside clients (the
// bench engine, routerctl): a fake ingest that publishes into a real JetStream
// stream ROUTER_MESSAGES (natstest), an in-memory fake CAMS, and a fake router that
// consumes the stream and delivers each payload to the agent's inbox — a JetStream
// subject or an HTTP endpoint — with the contract's messageId headers. NATS is real;
// only the msgrouter services are faked, by their HTTP/NATS contract.
package benchtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msgrouter/msgrouter/internal/apiclient"
	"github.com/msgrouter/msgrouter/internal/message"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// Options shape the fake system.
type Options struct {
	// NoRouter leaves messages in the stream: nothing is delivered.
	NoRouter bool
	// DeliverTimes is how often the router delivers each message (2 = every
	// message duplicated). Defaults to 1.
	DeliverTimes int
	// IngestStatus, when set, picks the answer to the n-th ingest request (from 1):
	// 0 accepts it, anything else answers that status with an error body.
	IngestStatus func(n int64) int
	// APIKey, when set, is required as the bearer key by ingest and CAMS.
	APIKey string
}

// Env is a running fake system.
type Env struct {
	NATS      *natstest.Server
	NATSURL   string
	IngestURL string
	CAMSURL   string
	CAMS      *CAMS
	// Routed counts messages the fake router took from the stream.
	Routed atomic.Int64
}

// Start runs the fake system until t ends.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	o.DeliverTimes = max(o.DeliverTimes, 1)
	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	ctx := context.Background()
	if _, err := stream.Ensure(ctx, js); err != nil {
		t.Fatalf("benchtest: %v", err)
	}
	env := &Env{NATS: ns, NATSURL: ns.URL, CAMS: NewCAMS(o.APIKey)}

	camsSrv := httptest.NewServer(env.CAMS)
	t.Cleanup(camsSrv.Close)
	env.CAMSURL = camsSrv.URL

	var n atomic.Int64
	ingest := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/messages/batch" && authorized(r, o.APIKey) {
			serveBatch(w, r, js)
			return
		}
		if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
			writeError(w, http.StatusNotFound, "NOT_FOUND", "no route")
			return
		}
		if !authorized(r, o.APIKey) {
			writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "missing or wrong bearer key")
			return
		}
		if o.IngestStatus != nil {
			if st := o.IngestStatus(n.Add(1)); st != 0 {
				writeError(w, st, statusCode(st), "refused by the fake")
				return
			}
		}
		body, _ := io.ReadAll(r.Body)
		id, status, err := publish(r.Context(), js, body)
		if err != nil {
			writeError(w, status, statusCode(status), err.Error())
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"messageId": id})
	})
	ingestSrv := httptest.NewServer(ingest)
	t.Cleanup(ingestSrv.Close)
	env.IngestURL = ingestSrv.URL

	if !o.NoRouter {
		env.startRouter(t, nc, js, o.DeliverTimes)
	}
	return env
}

func (env *Env) startRouter(t testing.TB, _ *nats.Conn, js jetstream.JetStream, times int) {
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, stream.Name, jetstream.ConsumerConfig{
		// A long AckWait and a small pull batch: the fake delivers serially, and a
		// message buffered past AckWait would be redelivered — a real duplicate the
		// bench would rightly count, but not what these tests are about.
		Durable: "fake-router", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
	})
	if err != nil {
		t.Fatalf("benchtest: %v", err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	deliver := func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		e, err := message.Parse(m.Data())
		if err != nil {
			return m.Term()
		}
		id := message.DirectID(m.Headers().Get(jetstream.MsgIDHeader), e, stream.Name, meta.Sequence.Stream).String()
		a, ok := env.CAMS.Get(e.AIAgentAddress)
		if !ok {
			return m.Term()
		}
		for range times {
			switch a.InboxDestinationType {
			case apiclient.TypeNATSSubject:
				out := nats.NewMsg(a.InboxName)
				out.Data = e.Payload
				out.Header.Set("messageId", id)
				// No Nats-Msg-Id: the inbox stream would hide the duplicates
				// DeliverTimes asks for.
				if _, err := js.PublishMsg(ctx, out); err != nil {
					return err
				}
			case apiclient.TypeHTTPEndpoint:
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.InboxName, bytes.NewReader(e.Payload))
				if err != nil {
					return err
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Message-Id", id)
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		return m.Ack()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		env.Routed.Add(1)
		if err := deliver(m); err != nil {
			_ = m.NakWithDelay(50 * time.Millisecond)
		}
	}, jetstream.PullMaxMessages(16))
	if err != nil {
		t.Fatalf("benchtest: %v", err)
	}
	t.Cleanup(func() {
		cc.Stop()
		<-cc.Closed()
		tr.CloseIdleConnections()
	})
}

// CAMS is an in-memory CAMS (DESIGN §4). It is an http.Handler.
type CAMS struct {
	apiKey string
	mu     sync.Mutex
	agents map[string]apiclient.Agent
	// Health records the health reports received, in order.
	Health []apiclient.HealthReport
}

// NewCAMS returns an empty CAMS; a non-empty apiKey is required as the bearer key.
func NewCAMS(apiKey string) *CAMS {
	return &CAMS{apiKey: apiKey, agents: map[string]apiclient.Agent{}}
}

// Get returns a registered agent.
func (c *CAMS) Get(addr string) (apiclient.Agent, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.agents[addr]
	return a, ok
}

// Put registers or replaces an agent directly.
func (c *CAMS) Put(a apiclient.Agent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.agents[a.AIAgentAddress] = a
}

// Len is how many agents are registered.
func (c *CAMS) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.agents)
}

func (c *CAMS) sorted() []apiclient.Agent {
	out := make([]apiclient.Agent, 0, len(c.agents))
	for _, a := range c.agents {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b apiclient.Agent) int {
		if a.AIAgentAddress < b.AIAgentAddress {
			return -1
		}
		return 1
	})
	return out
}

func (c *CAMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !authorized(r, c.apiKey) {
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "missing or wrong bearer key")
		return
	}
	const prefix = "/v1/agent-inboxes/"
	c.mu.Lock()
	defer c.mu.Unlock()
	path := r.URL.EscapedPath()
	switch {
	case path == "/v1/agent-inboxes" && r.Method == http.MethodGet:
		all := c.sorted()
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if limit <= 0 {
			limit = 100
		}
		from, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		from = min(from, len(all))
		to := min(from+limit, len(all))
		page := map[string]any{"items": all[from:to]}
		if to < len(all) {
			page["nextCursor"] = strconv.Itoa(to)
		}
		writeJSON(w, http.StatusOK, page)
	case path == "/v1/agent-inboxes" && r.Method == http.MethodPost:
		var a apiclient.Agent
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil || a.AIAgentAddress == "" || a.InboxName == "" ||
			(a.InboxDestinationType != apiclient.TypeNATSSubject && a.InboxDestinationType != apiclient.TypeHTTPEndpoint) {
			writeError(w, http.StatusBadRequest, "INVALID_REQUEST", "invalid mapping")
			return
		}
		if _, ok := c.agents[a.AIAgentAddress]; ok {
			writeError(w, http.StatusConflict, "CONFLICT", "agent "+a.AIAgentAddress+" exists")
			return
		}
		now := time.Now().UTC()
		if a.Status == "" {
			a.Status = "ACTIVE"
		}
		a.RegistrationTimestamp, a.LastUpdatedTimestamp = &now, &now
		c.agents[a.AIAgentAddress] = a
		writeJSON(w, http.StatusCreated, a)
	case path == "/v1/agent-health-check" && r.Method == http.MethodPost:
		var h apiclient.HealthReport
		if err := json.NewDecoder(r.Body).Decode(&h); err != nil || (h.Status != "HEALTHY" && h.Status != "UNHEALTHY") {
			writeError(w, http.StatusBadRequest, "INVALID_REQUEST", "invalid health report")
			return
		}
		a, ok := c.agents[h.AIAgentAddress]
		if !ok {
			writeError(w, http.StatusNotFound, "NOT_FOUND", "unknown agent")
			return
		}
		if h.Status == "UNHEALTHY" {
			a.Status = "INACTIVE"
			c.agents[a.AIAgentAddress] = a
		}
		c.Health = append(c.Health, h)
		writeJSON(w, http.StatusOK, a)
	case len(path) > len(prefix) && path[:len(prefix)] == prefix:
		addr, err := url.PathUnescape(path[len(prefix):])
		if err != nil {
			writeError(w, http.StatusBadRequest, "INVALID_REQUEST", "bad address")
			return
		}
		a, ok := c.agents[addr]
		if !ok {
			writeError(w, http.StatusNotFound, "NOT_FOUND", "agent "+addr+" is not registered")
			return
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, a)
		case http.MethodDelete:
			delete(c.agents, addr)
			w.WriteHeader(http.StatusNoContent)
		case http.MethodPut:
			var u apiclient.AgentUpdate
			if err := json.NewDecoder(r.Body).Decode(&u); err != nil {
				writeError(w, http.StatusBadRequest, "INVALID_REQUEST", "invalid update")
				return
			}
			setIf(&a.InboxDestinationType, u.InboxDestinationType)
			setIf(&a.InboxName, u.InboxName)
			setIf(&a.Status, u.Status)
			setIf(&a.Description, u.Description)
			setIf(&a.OwnerTeam, u.OwnerTeam)
			c.agents[addr] = a
			writeJSON(w, http.StatusOK, a)
		default:
			writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "method not allowed")
		}
	default:
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no route for "+r.Method+" "+path)
	}
}

func setIf(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}

func authorized(r *http.Request, key string) bool {
	return key == "" || r.Header.Get("Authorization") == "Bearer "+key
}

func statusCode(st int) string {
	switch st {
	case http.StatusTooManyRequests:
		return "RATE_LIMITED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusBadRequest:
		return "INVALID_REQUEST"
	}
	return "INTERNAL"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, map[string]string{"errorCode": code, "message": msg})
}

// serveBatch is the fake POST /v1/messages/batch (DESIGN §2): each item published
// like a single message, one result per item, in order.
func serveBatch(w http.ResponseWriter, r *http.Request, js jetstream.JetStream) {
	var req struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
		writeError(w, http.StatusBadRequest, "INVALID_REQUEST", "not a batch")
		return
	}
	type result struct {
		MessageID string `json:"messageId,omitempty"`
		ErrorCode string `json:"errorCode,omitempty"`
		Message   string `json:"message,omitempty"`
	}
	results := make([]result, len(req.Messages))
	for i, body := range req.Messages {
		id, status, err := publish(r.Context(), js, body)
		if err != nil {
			results[i] = result{ErrorCode: statusCode(status), Message: err.Error()}
			continue
		}
		results[i] = result{MessageID: id}
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

// publish validates body as ingest does and publishes it to the stream with its
// messageId as Nats-Msg-Id. It returns the messageId, or the status of the error
// (400 for an invalid envelope, 503 when JetStream did not store it).
func publish(ctx context.Context, js jetstream.JetStream, body []byte) (string, int, error) {
	env, err := message.Parse(body)
	if err != nil {
		return "", http.StatusBadRequest, err
	}
	id, _ := env.ID()
	m := nats.NewMsg(stream.Subject)
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, id.String())
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return "", http.StatusServiceUnavailable, err
	}
	return id.String(), 0, nil
}
