package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/apiclient"
)

// cli runs routerctl in-process.
type cli struct {
	env      map[string]string
	stdin    string
	terminal bool
}

type out struct {
	code           int
	stdout, stderr string
}

func (c cli) run(t *testing.T, args ...string) out {
	t.Helper()
	var stdout, stderr bytes.Buffer
	a := newApp(strings.NewReader(c.stdin), &stdout, &stderr, func(k string) string { return c.env[k] })
	a.terminal = func(any) bool { return c.terminal }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := a.run(ctx, args)
	if a.client != nil {
		a.client.HTTP.CloseIdleConnections()
	}
	return out{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// runPage runs a listing command with --json, requires exit status 0, and decodes
// the page it printed.
func (c cli) runPage(t *testing.T, args ...string) apiclient.MessagePage {
	t.Helper()
	o := c.run(t, args...)
	require.Equal(t, 0, o.code, o.stderr)
	var page apiclient.MessagePage
	require.NoError(t, json.Unmarshal([]byte(o.stdout), &page))
	return page
}

// fakeRouter serves the admin API of DESIGN §6 from a fixed set of messages.
type fakeRouter struct {
	mu       sync.Mutex
	msgs     []apiclient.Message // newest first
	requests []string
	auth     []string
	bodies   []string
	conflict map[string]bool // replay answers 409
	srv      *httptest.Server
}

// routerCLI starts a fake router holding sampleMessages(n) and returns it with a
// routerctl pointed at it (ROUTER_URL).
func routerCLI(t *testing.T, n int) (*fakeRouter, cli) {
	t.Helper()
	f := newFakeRouter(t, sampleMessages(n))
	return f, cli{env: map[string]string{"ROUTER_URL": f.srv.URL}}
}

func newFakeRouter(t *testing.T, msgs []apiclient.Message) *fakeRouter {
	f := &fakeRouter{msgs: msgs, conflict: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/messages/{id}", func(w http.ResponseWriter, r *http.Request) {
		if m, ok := f.find(r.PathValue("id")); ok {
			writeJSON(w, 200, m)
			return
		}
		writeErr(w, 404, "NOT_FOUND", "message "+r.PathValue("id")+" is unknown")
	})
	mux.HandleFunc("GET /v1/messages", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f.mu.Lock()
		var match []apiclient.Message
		for _, m := range f.msgs {
			if (q.Get("status") == "" || m.Status == q.Get("status")) && (q.Get("aiAgentAddress") == "" || m.AIAgentAddress == q.Get("aiAgentAddress")) {
				m.History = nil
				match = append(match, m)
			}
		}
		f.mu.Unlock()
		limit, _ := strconv.Atoi(q.Get("limit"))
		if limit == 0 {
			limit = 100
		}
		from, _ := strconv.Atoi(q.Get("cursor"))
		to := min(from+limit, len(match))
		page := map[string]any{"items": append([]apiclient.Message{}, match[from:to]...), "nextCursor": nil}
		if to < len(match) {
			page["nextCursor"] = strconv.Itoa(to)
		}
		writeJSON(w, 200, page)
	})
	mux.HandleFunc("POST /v1/messages/{id}/replay", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		m, ok := f.find(id)
		switch {
		case !ok:
			writeErr(w, 404, "NOT_FOUND", "message "+id+" is unknown")
		case f.conflict[id] || (m.Status != "DEAD_LETTERED" && m.Status != "REJECTED"):
			writeErr(w, 409, "CONFLICT", "message "+id+" is "+m.Status)
		default:
			w.WriteHeader(202)
		}
	})
	mux.HandleFunc("POST /v1/dead-letters/replay", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 202, map[string]int{"replayed": 3})
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.bodies = append(f.bodies, string(body))
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRouter) find(id string) (apiclient.Message, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.msgs, func(m apiclient.Message) bool { return m.MessageID == id })
	if i < 0 {
		return apiclient.Message{}, false
	}
	return f.msgs[i], true
}

func (f *fakeRouter) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"errorCode": code, "message": msg})
}

func at(min int) *time.Time {
	t := time.Date(2026, 1, 1, 0, min, 0, 0, time.UTC)
	return &t
}

func sampleMessages(n int) []apiclient.Message {
	statuses := []string{"DELIVERED", "DEAD_LETTERED", "REJECTED", "PENDING"}
	reasons := map[string]string{"DEAD_LETTERED": "MAX_ATTEMPTS_EXCEEDED", "REJECTED": "AGENT_NOT_FOUND"}
	var out []apiclient.Message
	for i := n - 1; i >= 0; i-- {
		st := statuses[i%len(statuses)]
		out = append(out, apiclient.Message{
			MessageID: fmt.Sprintf("m-%03d", i), AIAgentAddress: fmt.Sprintf("agent-%d@example.com", i%3),
			Status: st, Reason: reasons[st], Attempts: i % 5, ReceivedAt: at(i % 60),
			Destination: &apiclient.Destination{Type: "NATS_SUBJECT", Name: "agents.x"},
		})
	}
	return out
}

func TestHelpAndUsage(t *testing.T) {
	t.Parallel()
	var c cli
	for _, tc := range []struct {
		args []string
		code int
		in   string // expected in stdout (code 0) or stderr
	}{
		{[]string{"help"}, 0, "dead-letters"},
		{[]string{"--help"}, 0, "agents"},
		{[]string{"-h"}, 0, "bench"},
		{[]string{"help", "replay"}, 0, "usage: routerctl replay"},
		{[]string{"status", "--help"}, 0, "usage: routerctl status <messageId>"},
		{[]string{"bench", "--help"}, 0, "-rate"},
		{[]string{"agents", "--help"}, 0, "health"},
		{[]string{"agents", "create", "--help"}, 0, "-owner-team"},
		{nil, 2, "usage: routerctl"},
		{[]string{"frobnicate"}, 2, `error: unknown command "frobnicate"`},
		{[]string{"status"}, 2, "error: expected one messageId"},
		{[]string{"status", "a", "b"}, 2, "error: expected one messageId"},
		{[]string{"list", "--limit", "0"}, 2, "--limit"},
		{[]string{"list", "--nope"}, 2, "flag provided but not defined: -nope"},
		{[]string{"--timeout", "soon", "list"}, 2, "invalid value"},
		{[]string{"agents"}, 2, "agents needs a subcommand"},
		{[]string{"agents", "explode"}, 2, "unknown agents subcommand"},
		{[]string{"agents", "create", "x"}, 2, "needs --type and --inbox"},
		{[]string{"agents", "create", "x", "--type", "SMTP", "--inbox", "y"}, 2, "--type must be"},
		{[]string{"agents", "update", "x"}, 2, "needs at least one"},
		{[]string{"agents", "health", "x", "SICK"}, 2, "HEALTHY or UNHEALTHY"},
		{[]string{"send", "--agent", "a"}, 2, "needs --agent and --payload"},
		{[]string{"send", "--agent", "a", "--payload", "[1]"}, 2, "must be a JSON object"},
		{[]string{"replay"}, 2, "give messageIds"},
		{[]string{"replay", "--all", "m-1"}, 2, "give no messageIds"},
		{[]string{"replay", "m-1", "--reason", "X"}, 2, "need --all"},
		{[]string{"replay", "--all", "--since", "yesterday"}, 2, "--since"},
		{[]string{"bench", "--mode", "carrier-pigeon"}, 2, "mode must be http or nats"},
		{[]string{"bench", "--clients", "0"}, 2, "--clients"},
		{[]string{"tail"}, 2, "one subject"},
	} {
		o := c.run(t, tc.args...)
		require.Equal(t, tc.code, o.code, "%v: %+v", tc.args, o)
		where := o.stderr
		if tc.code == 0 {
			where = o.stdout
		}
		require.Contains(t, where, tc.in, "%v", tc.args)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	msg := apiclient.Message{
		MessageID: "0190a0b0-0000-7000-8000-000000000001", AIAgentAddress: "agent-sales@example.com",
		Status: "DEAD_LETTERED", Reason: "MAX_ATTEMPTS_EXCEEDED", Attempts: 2, LastError: "HTTP 500",
		Destination: &apiclient.Destination{Type: "HTTP_ENDPOINT", Name: "https://agents.example.com/inbox"},
		ReceivedAt:  at(1),
		History: []apiclient.Attempt{
			{Attempt: 1, At: at(2), Outcome: "FAILED", Error: "HTTP 503", DurationMs: 12.5},
			{Attempt: 2, At: at(3), Outcome: "FAILED", Error: "HTTP 500", DurationMs: 8},
		},
	}
	f := newFakeRouter(t, []apiclient.Message{msg})
	c := cli{env: map[string]string{"ROUTER_URL": f.srv.URL, "ROUTERCTL_API_KEY": "s3cret"}}

	o := c.run(t, "status", msg.MessageID)
	require.Equal(t, 0, o.code, o.stderr)
	for _, want := range []string{"DEAD_LETTERED (MAX_ATTEMPTS_EXCEEDED)", "HTTP_ENDPOINT https://agents.example.com/inbox",
		"ATTEMPT", "HTTP 503", "12.5ms", "2026-01-01T00:03:00.000Z", "deliveredAt  -"} {
		require.Contains(t, o.stdout, want)
	}
	require.Equal(t, "Bearer s3cret", f.auth[0])

	// Flags after the positional argument work too.
	o = c.run(t, "status", msg.MessageID, "--json")
	require.Equal(t, 0, o.code, o.stderr)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(o.stdout), &got))
	require.Equal(t, msg.MessageID, got["messageId"])
	require.Equal(t, "DEAD_LETTERED", got["status"])
	require.Len(t, got["history"], 2)
	require.Equal(t, map[string]any{"type": "HTTP_ENDPOINT", "name": "https://agents.example.com/inbox"}, got["destination"])

	o = c.run(t, "status", "nope")
	require.Equal(t, 1, o.code)
	require.Equal(t, "error: NOT_FOUND: message nope is unknown\n", o.stderr)
	require.Empty(t, o.stdout)

	// A flag overrides the environment.
	o = c.run(t, "--router-url", "http://127.0.0.1:1", "status", "x")
	require.Equal(t, 1, o.code)
	require.Contains(t, o.stderr, "error: calling GET http://127.0.0.1:1/v1/messages/x")

	// A body that is not the contract's error body still renders.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}))
	defer plain.Close()
	o = c.run(t, "--router-url", plain.URL, "status", "x")
	require.Equal(t, 1, o.code)
	require.Equal(t, "error: HTTP_502: bad gateway\n", o.stderr)
}

func TestListFollowsCursors(t *testing.T) {
	t.Parallel()
	f, c := routerCLI(t, 250)

	page := c.runPage(t, "list", "--json", "--all", "--limit", "100")
	require.Len(t, page.Items, 250)
	require.Empty(t, page.NextCursor)
	require.Equal(t, "m-249", page.Items[0].MessageID)
	require.Equal(t, []string{
		"GET /v1/messages?limit=100", "GET /v1/messages?cursor=100&limit=100", "GET /v1/messages?cursor=200&limit=100",
	}, f.log())

	o := c.run(t, "list", "--limit", "10", "--status", "delivered", "--agent", "agent-1@example.com")
	require.Equal(t, 0, o.code, o.stderr)
	lines := strings.Split(strings.TrimSpace(o.stdout), "\n")
	require.Len(t, lines, 11)
	require.Contains(t, lines[0], "MESSAGE ID")
	require.Contains(t, o.stderr, "more: --cursor 10")
	require.Contains(t, f.log()[3], "status=DELIVERED")
	require.Contains(t, f.log()[3], "aiAgentAddress=agent-1%40example.com")
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	_, c := routerCLI(t, 40)
	page := c.runPage(t, "dead-letters", "--json", "--all", "--limit", "3")
	require.Len(t, page.Items, 20)
	for i, m := range page.Items {
		require.Contains(t, []string{"DEAD_LETTERED", "REJECTED"}, m.Status)
		if i > 0 {
			require.False(t, m.ReceivedAt.After(*page.Items[i-1].ReceivedAt), "newest first")
		}
	}
	page = c.runPage(t, "dead-letters", "--reason", "agent_not_found", "--json")
	require.Len(t, page.Items, 10)
}

func TestReplay(t *testing.T) {
	t.Parallel()
	f, c := routerCLI(t, 40)

	o := c.run(t, "replay", "m-001")
	require.Equal(t, 0, o.code, o.stderr)
	require.Equal(t, "replayed m-001\n", o.stdout)

	// m-000 is DELIVERED: 409; m-999 is unknown: 404.
	o = c.run(t, "replay", "m-001", "m-000", "m-002", "m-999")
	require.Equal(t, 1, o.code)
	require.Equal(t, "replayed 2 of 4 (2 failed)\n", o.stdout)
	require.Contains(t, o.stderr, "error: m-000: CONFLICT: message m-000 is DELIVERED\n")
	require.Contains(t, o.stderr, "error: m-999: NOT_FOUND: message m-999 is unknown\n")

	o = c.run(t, "replay", "--json", "m-001", "m-000")
	require.Equal(t, 1, o.code)
	var res struct {
		Requested, Replayed int
		Failed              []replayFailure
	}
	require.NoError(t, json.Unmarshal([]byte(o.stdout), &res))
	require.Equal(t, 2, res.Requested)
	require.Equal(t, 1, res.Replayed)
	require.Equal(t, []replayFailure{{MessageID: "m-000", ErrorCode: "CONFLICT", Message: "message m-000 is DELIVERED"}}, res.Failed)

	o = c.run(t, "replay", "--all", "--status", "dead_lettered", "--agent", "a@b", "--reason", "MAX_ATTEMPTS_EXCEEDED",
		"--since", "2026-01-01T00:00:00Z", "--json")
	require.Equal(t, 0, o.code, o.stderr)
	require.JSONEq(t, `{"replayed": 3}`, o.stdout)
	f.mu.Lock()
	body := f.bodies[len(f.bodies)-1]
	f.mu.Unlock()
	require.JSONEq(t, `{"status":"DEAD_LETTERED","aiAgentAddress":"a@b","reason":"MAX_ATTEMPTS_EXCEEDED","since":"2026-01-01T00:00:00Z"}`, body)

	o = c.run(t, "replay", "--all")
	require.Equal(t, 0, o.code, o.stderr)
	require.Equal(t, "replayed 3\n", o.stdout)
}

func TestReplayFromStdinShowsProgress(t *testing.T) {
	t.Parallel()
	f := newFakeRouter(t, sampleMessages(200))
	var ids []string
	for i := 1; i < 200; i += 4 { // the DEAD_LETTERED ones: 50
		ids = append(ids, fmt.Sprintf("m-%03d", i))
	}
	stdin := "# ids to replay\n" + strings.Join(ids[:25], "\n") + "\n\n" + strings.Join(ids[25:], " ") + "\nm-000\n"
	c := cli{env: map[string]string{"ROUTER_URL": f.srv.URL}, stdin: stdin, terminal: true}
	o := c.run(t, "replay", "-", "--concurrency", "4")
	require.Equal(t, 1, o.code)
	require.Equal(t, "replayed 50 of 51 (1 failed)\n", o.stdout)
	require.Contains(t, o.stderr, "replaying [")
	require.Contains(t, o.stderr, "] 51/51 (1 failed)")
	require.Contains(t, o.stderr, "error: m-000: CONFLICT")

	// Not a terminal: no bar, same result.
	c.terminal = false
	c.stdin = strings.Join(ids, "\n")
	o = c.run(t, "replay", "--stdin")
	require.Equal(t, 0, o.code, o.stderr)
	require.Empty(t, o.stderr)
	require.Equal(t, "replayed 50 of 50 (0 failed)\n", o.stdout)
}

func TestParseSince(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	got, err := parseSince("2h", now)
	require.NoError(t, err)
	require.Equal(t, now.Add(-2*time.Hour), got)
	got, err = parseSince("2026-04-01T00:00:00+02:00", now)
	require.NoError(t, err)
	require.True(t, got.Equal(time.Date(2026, 3, 31, 22, 0, 0, 0, time.UTC)))
	_, err = parseSince("-2h", now)
	require.Error(t, err)
}
