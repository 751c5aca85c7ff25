package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/cmd/routerctl/internal/bench/benchtest"
	"github.com/msgrouter/msgrouter/internal/apiclient"
	"github.com/msgrouter/msgrouter/internal/periodic"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

func TestSend(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var bodies []string
	ingest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		if strings.Contains(string(b), "too-big") {
			writeErr(w, 413, "PAYLOAD_TOO_LARGE", "body over 262144 bytes")
			return
		}
		id := "m-delivered"
		if strings.Contains(string(b), "nobody") {
			id = "m-rejected"
		}
		writeJSON(w, 202, map[string]string{"messageId": id})
	}))
	t.Cleanup(ingest.Close)
	// The router sees m-delivered only on the second poll, PENDING, then DELIVERED.
	var polls atomic.Int32
	router := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/messages/m-delivered":
			switch n := polls.Add(1); {
			case n == 1:
				writeErr(w, 404, "NOT_FOUND", "unknown")
			case n == 2:
				writeJSON(w, 200, apiclient.Message{MessageID: "m-delivered", Status: "PENDING"})
			default:
				writeJSON(w, 200, apiclient.Message{MessageID: "m-delivered", Status: "DELIVERED", Attempts: 1})
			}
		case "/v1/messages/m-rejected":
			writeJSON(w, 200, apiclient.Message{MessageID: "m-rejected", Status: "REJECTED", Reason: "AGENT_NOT_FOUND"})
		default:
			writeErr(w, 500, "INTERNAL", "boom")
		}
	}))
	t.Cleanup(router.Close)
	c := cli{env: map[string]string{"INGEST_URL": ingest.URL, "ROUTER_URL": router.URL}}

	o := c.run(t, "send", "--agent", "agent-sales@example.com", "--payload", `{"n": 12345678901234567890}`,
		"--service", "crm", "--correlation-id", "c-1", "--sender-message-id", "s-1")
	require.Equal(t, 0, o.code, o.stderr)
	require.Equal(t, "m-delivered\n", o.stdout)
	require.JSONEq(t, `{"aiAgentAddress":"agent-sales@example.com","payload":{"n": 12345678901234567890},
		"senderMetadata":{"serviceName":"crm","correlationId":"c-1","senderProvidedMessageId":"s-1"}}`, bodies[0])
	// The payload's digits travel as given.
	require.Contains(t, bodies[0], "12345678901234567890")

	o = c.run(t, "send", "--agent", "a", "--payload", `{}`, "--wait", "--poll", "10ms", "--json")
	require.Equal(t, 0, o.code, o.stderr)
	var res struct {
		MessageID, Status string
		Message           apiclient.Message
	}
	require.NoError(t, json.Unmarshal([]byte(o.stdout), &res))
	require.Equal(t, "DELIVERED", res.Status)
	require.Equal(t, 1, res.Message.Attempts)
	require.GreaterOrEqual(t, polls.Load(), int32(3))

	o = c.run(t, "send", "--agent", "nobody", "--payload", `{}`, "--wait", "--poll", "10ms")
	require.Equal(t, 1, o.code)
	require.Equal(t, "m-rejected\nREJECTED AGENT_NOT_FOUND\n", o.stdout)

	o = c.run(t, "send", "--agent", "a", "--payload", `{"x":"too-big"}`)
	require.Equal(t, 1, o.code)
	require.Equal(t, "error: PAYLOAD_TOO_LARGE: body over 262144 bytes\n", o.stderr)

	c.stdin = `{"from":"stdin"}`
	o = c.run(t, "send", "--agent", "a", "--payload", "-")
	require.Equal(t, 0, o.code, o.stderr)
	require.Contains(t, bodies[len(bodies)-1], `"payload":{"from":"stdin"}`)
}

func TestAgents(t *testing.T) {
	t.Parallel()
	cams := benchtest.NewCAMS("k3y")
	srv := httptest.NewServer(cams)
	t.Cleanup(srv.Close)
	c := cli{env: map[string]string{"CAMS_API_URL": srv.URL, "ROUTERCTL_API_KEY": "k3y"}}

	o := c.run(t, "agents", "create", "agent/sales+1@example.com", "--type", "nats_subject", "--inbox", "agents.sales.inbox",
		"--description", "Sales agent", "--owner-team", "Sales")
	require.Equal(t, 0, o.code, o.stderr)
	require.Contains(t, o.stdout, "agents.sales.inbox")
	require.Contains(t, o.stdout, "ACTIVE")

	o = c.run(t, "agents", "create", "agent/sales+1@example.com", "--type", "HTTP_ENDPOINT", "--inbox", "https://x")
	require.Equal(t, 1, o.code)
	require.Equal(t, "error: CONFLICT: agent agent/sales+1@example.com exists\n", o.stderr)

	for i := range 4 {
		o = c.run(t, "agents", "create", "b"+string(rune('0'+i)), "--type", "HTTP_ENDPOINT", "--inbox", "https://example.com/"+string(rune('0'+i)))
		require.Equal(t, 0, o.code, o.stderr)
	}

	// The address, slash included, survives the path escaping.
	o = c.run(t, "agents", "get", "agent/sales+1@example.com", "--json")
	require.Equal(t, 0, o.code, o.stderr)
	var ag apiclient.Agent
	require.NoError(t, json.Unmarshal([]byte(o.stdout), &ag))
	require.Equal(t, "Sales agent", ag.Description)

	// A partial update leaves the other fields alone.
	o = c.run(t, "agents", "update", "agent/sales+1@example.com", "--owner-team", "Growth", "--json")
	require.Equal(t, 0, o.code, o.stderr)
	require.NoError(t, json.Unmarshal([]byte(o.stdout), &ag))
	require.Equal(t, "Growth", ag.OwnerTeam)
	require.Equal(t, "Sales agent", ag.Description)
	require.Equal(t, "agents.sales.inbox", ag.InboxName)

	o = c.run(t, "agents", "list", "--limit", "2", "--all", "--json")
	require.Equal(t, 0, o.code, o.stderr)
	var page apiclient.AgentPage
	require.NoError(t, json.Unmarshal([]byte(o.stdout), &page))
	require.Len(t, page.Items, 5)

	o = c.run(t, "agents", "list", "--limit", "2")
	require.Equal(t, 0, o.code, o.stderr)
	require.Len(t, strings.Split(strings.TrimSpace(o.stdout), "\n"), 3)
	require.Contains(t, o.stderr, "more: --cursor 2")

	o = c.run(t, "agents", "health", "b1", "unhealthy", "--details", "disk full")
	require.Equal(t, 0, o.code, o.stderr)
	require.Equal(t, "reported b1 UNHEALTHY\n", o.stdout)
	got, _ := cams.Get("b1")
	require.Equal(t, "INACTIVE", got.Status)

	o = c.run(t, "agents", "delete", "b1")
	require.Equal(t, 0, o.code, o.stderr)
	o = c.run(t, "agents", "get", "b1")
	require.Equal(t, 1, o.code)
	require.Equal(t, "error: NOT_FOUND: agent b1 is not registered\n", o.stderr)

	// Without the key CAMS refuses, and the error body is shown.
	o = cli{env: map[string]string{"CAMS_API_URL": srv.URL}}.run(t, "agents", "list")
	require.Equal(t, 1, o.code)
	require.Equal(t, "error: UNAUTHORIZED: missing or wrong bearer key\n", o.stderr)
}

// tailUntil runs tail in the background and returns a function that waits for it.
func tailUntil(t *testing.T, c cli, args ...string) func() out {
	t.Helper()
	done := make(chan out, 1)
	go func() { done <- c.run(t, args...) }()
	return func() out {
		select {
		case o := <-done:
			return o
		case <-time.After(20 * time.Second):
			t.Fatal("tail did not stop")
			return out{}
		}
	}
}

func TestTailStreamSubject(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "AGENTS", Subjects: []string{"agents.>"}})
	require.NoError(t, err)
	for i, body := range []string{`{"command":"processData","value":42}`, `not json`} {
		m := nats.NewMsg("agents.sales.inbox")
		m.Data = []byte(body)
		m.Header.Set("messageId", "m-"+string(rune('1'+i)))
		m.Header.Set("aiAgentAddress", "agent-sales@example.com")
		_, err := js.PublishMsg(ctx, m)
		require.NoError(t, err)
	}
	c := cli{env: map[string]string{"NATS_URL": ns.URL}}
	o := tailUntil(t, c, "tail", "agents.sales.inbox", "--from-start", "--count", "2")()
	require.Equal(t, 0, o.code, o.stderr)
	require.Contains(t, o.stdout, "--- agents.sales.inbox  (AGENTS #1")
	require.Contains(t, o.stdout, "messageId: m-1\n")
	require.Contains(t, o.stdout, `{"command":"processData","value":42}`)
	require.Contains(t, o.stdout, "not json\n")
	require.Contains(t, o.stderr, "on stream AGENTS")

	o = tailUntil(t, c, "tail", "agents.sales.inbox", "--from-start", "--count", "1", "--json")()
	require.Equal(t, 0, o.code, o.stderr)
	var tm tailMsg
	require.NoError(t, json.Unmarshal([]byte(o.stdout), &tm))
	require.Equal(t, "AGENTS", tm.Stream)
	require.EqualValues(t, 1, tm.Sequence)
	require.Equal(t, []string{"m-1"}, tm.Headers["messageId"])
	require.JSONEq(t, `{"command":"processData","value":42}`, string(tm.Payload))
}

func TestTailPlainSubject(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	nc, _ := ns.Connect(t)
	c := cli{env: map[string]string{"NATS_URL": ns.URL}}
	wait := tailUntil(t, c, "tail", "live.only", "--count", "1", "--json")
	// Nothing stores the subject: publish until the subscriber has seen one.
	publishing, stop := context.WithCancel(t.Context())
	go periodic.Every(publishing, 20*time.Millisecond, 20*time.Millisecond, func(context.Context) {
		_ = nc.Publish("live.only", []byte(`{"hello":"world"}`))
	})
	o := wait()
	stop()
	require.Equal(t, 0, o.code, o.stderr)
	var tm tailMsg
	require.NoError(t, json.Unmarshal([]byte(o.stdout), &tm))
	require.Equal(t, "live.only", tm.Subject)
	require.Empty(t, tm.Stream)
	require.JSONEq(t, `{"hello":"world"}`, string(tm.Payload))

	o = c.run(t, "tail", "live.only", "--from-start")
	require.Equal(t, 1, o.code)
	require.Contains(t, o.stderr, "no stream captures live.only")
}

func TestBench(t *testing.T) {
	t.Parallel()
	env := benchtest.Start(t, benchtest.Options{})
	c := cli{env: map[string]string{"INGEST_URL": env.IngestURL, "CAMS_API_URL": env.CAMSURL, "NATS_URL": env.NATSURL}}
	o := c.run(t, "bench", "--count", "100", "--clients", "4", "--agents", "2", "--inbox", "both", "--json", "--quiet")
	require.Equal(t, 0, o.code, o.stderr)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(o.stdout), &res))
	require.EqualValues(t, 100, res["accepted"])
	require.EqualValues(t, 100, res["delivered"])
	require.EqualValues(t, 0, res["missing"])
	require.Contains(t, res, "latency")
	lat := res["latency"].(map[string]any)["acceptToDelivery"].(map[string]any)
	require.EqualValues(t, 100, lat["count"])
	require.Contains(t, lat, "p999Ms")
	require.Zero(t, env.CAMS.Len())

	o = c.run(t, "bench", "--count", "50", "--mode", "nats", "--rate", "1000", "--inbox", "nats")
	require.Equal(t, 0, o.code, o.stderr)
	require.Contains(t, o.stdout, "submit→delivery")
	require.Contains(t, o.stdout, "open loop")
	require.Contains(t, o.stderr, "bench: nats mode")

	// Nothing delivers: exit 1 with the hint.
	quiet := benchtest.Start(t, benchtest.Options{NoRouter: true})
	c = cli{env: map[string]string{"INGEST_URL": quiet.IngestURL, "CAMS_API_URL": quiet.CAMSURL, "NATS_URL": quiet.NATSURL}}
	o = c.run(t, "bench", "--count", "5", "--inbox", "http", "--drain-timeout", "100ms", "--quiet")
	require.Equal(t, 1, o.code)
	require.Contains(t, o.stdout, "DELIVERY_ALLOW_PRIVATE_NETWORKS=true")
}
