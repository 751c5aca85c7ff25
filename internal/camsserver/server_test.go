package camsserver

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/cams/mapping/mappingtest"
	"github.com/msgrouter/msgrouter/internal/testutil/bodytest"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

type serverBundle struct {
	h     *Handler
	srv   *httptest.Server
	reg   *prometheus.Registry
	store *Store
}

func setupServer(t *testing.T, keys string) *serverBundle {
	t.Helper()
	pool := pgtest.New(t)
	k, err := auth.Parse(keys)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	store := NewStore(pool)
	h := NewHandler(HandlerConfig{Store: store, Registerer: reg, AdminKeys: k, Version: "test-1"})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &serverBundle{h: h, srv: srv, reg: reg, store: store}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(a.body, &m), "body: %s", a.body)
	return m
}

func (a answer) mapping(t *testing.T) mapping.Mapping {
	t.Helper()
	var m mapping.Mapping
	require.NoError(t, json.Unmarshal(a.body, &m), "body: %s", a.body)
	return m
}

// requireError checks the contract's error body.
func (a answer) requireError(t *testing.T, status int, code string) {
	t.Helper()
	require.Equal(t, status, a.status, "body: %s", a.body)
	b := a.json(t)
	require.Equal(t, code, b["errorCode"], "body: %s", a.body)
	require.NotEmpty(t, b["message"])
	require.Len(t, b, 2)
}

// call sends body (a string is sent raw, anything else as JSON) with key as bearer.
func (b *serverBundle) call(t *testing.T, method, path string, body any, key string) answer {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, bodytest.Reader(t, body))
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

func agentPath(address string) string { return "/v1/agent-inboxes/" + mapping.EscapeAddress(address) }

var timestampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func TestServerCRUD(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	addr := "agent-sales@example.com"

	created := b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
		"aiAgentAddress": addr, "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": "agents.sales.inbox",
		"description": "Sales agent", "ownerTeam": "Sales", "updatedBy": "admin",
		"registrationTimestamp": "1999-01-01T00:00:00Z", // server-owned: ignored
	}, "")
	require.Equal(t, http.StatusCreated, created.status, "%s", created.body)
	require.Equal(t, "/v1/agent-inboxes/agent-sales@example.com", created.header.Get("Location"))
	raw := created.json(t)
	require.Regexp(t, timestampRE, raw["registrationTimestamp"])
	require.Regexp(t, timestampRE, raw["lastUpdatedTimestamp"])
	m := created.mapping(t)
	require.Equal(t, mapping.StatusActive, m.Status, "status defaults to ACTIVE")
	require.Equal(t, "Sales", m.OwnerTeam)
	require.WithinDuration(t, time.Now(), m.RegistrationTimestamp, time.Minute)

	got := b.call(t, "GET", agentPath(addr), nil, "")
	require.Equal(t, http.StatusOK, got.status)
	require.Equal(t, m, got.mapping(t))

	b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
		"aiAgentAddress": addr, "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": "other",
	}, "").requireError(t, http.StatusConflict, "CONFLICT")

	// Partial update: only description changes, the timestamp moves.
	upd := b.call(t, "PUT", agentPath(addr), map[string]any{"description": "new", "ownerTeam": nil}, "")
	require.Equal(t, http.StatusOK, upd.status, "%s", upd.body)
	um := upd.mapping(t)
	require.Equal(t, "new", um.Description)
	require.Equal(t, "Sales", um.OwnerTeam, "null is absent")
	require.Equal(t, "agents.sales.inbox", um.InboxName)
	require.Equal(t, m.RegistrationTimestamp, um.RegistrationTimestamp)
	require.True(t, um.LastUpdatedTimestamp.After(m.LastUpdatedTimestamp))

	// The result must still validate: switching the type alone leaves a subject as URL.
	b.call(t, "PUT", agentPath(addr), map[string]any{"inboxDestinationType": mapping.TypeHTTPEndpoint}, "").
		requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
	sw := b.call(t, "PUT", agentPath(addr), map[string]any{
		"inboxDestinationType": mapping.TypeHTTPEndpoint, "inboxName": "https://agents.example.com/sales",
		"signingSecrets": []string{"whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"},
	}, "")
	require.Equal(t, http.StatusOK, sw.status, "%s", sw.body)
	require.Equal(t, []string{mapping.Masked}, sw.mapping(t).SigningSecrets, "masked in answers")
	require.Equal(t, []string{"whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"},
		b.call(t, "GET", agentPath(addr)+"?includeSecrets=true", nil, "").mapping(t).SigningSecrets)
	cleared := b.call(t, "PUT", agentPath(addr), map[string]any{"signingSecrets": []string{}}, "").mapping(t)
	require.Empty(t, cleared.SigningSecrets)

	b.call(t, "PUT", agentPath(addr), map[string]any{"aiAgentAddress": "someone-else"}, "").
		requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
	b.call(t, "PUT", agentPath("nobody"), map[string]any{"description": "x"}, "").
		requireError(t, http.StatusNotFound, "NOT_FOUND")

	del := b.call(t, "DELETE", agentPath(addr), nil, "")
	require.Equal(t, http.StatusNoContent, del.status)
	require.Empty(t, del.body)
	b.call(t, "GET", agentPath(addr), nil, "").requireError(t, http.StatusNotFound, "NOT_FOUND")
	b.call(t, "DELETE", agentPath(addr), nil, "").requireError(t, http.StatusNotFound, "NOT_FOUND")
}

func TestServerValidation(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	valid := func(edit func(m map[string]any)) map[string]any {
		m := map[string]any{"aiAgentAddress": "a@x", "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": "agents.a"}
		edit(m)
		return m
	}
	long := strings.Repeat("x", mapping.MaxTextBytes+1)
	cases := map[string]any{
		"no address":          valid(func(m map[string]any) { delete(m, "aiAgentAddress") }),
		"empty address":       valid(func(m map[string]any) { m["aiAgentAddress"] = "" }),
		"address with space":  valid(func(m map[string]any) { m["aiAgentAddress"] = "a b" }),
		"address with tab":    valid(func(m map[string]any) { m["aiAgentAddress"] = "a\tb" }),
		"address control":     valid(func(m map[string]any) { m["aiAgentAddress"] = "a\u0007b" }),
		"address too long":    valid(func(m map[string]any) { m["aiAgentAddress"] = strings.Repeat("a", 257) }),
		"no type":             valid(func(m map[string]any) { delete(m, "inboxDestinationType") }),
		"unknown type":        valid(func(m map[string]any) { m["inboxDestinationType"] = "PUBSUB_TOPIC" }),
		"no inbox":            valid(func(m map[string]any) { delete(m, "inboxName") }),
		"subject wildcard *":  valid(func(m map[string]any) { m["inboxName"] = "agents.*" }),
		"subject wildcard >":  valid(func(m map[string]any) { m["inboxName"] = "agents.>" }),
		"subject empty token": valid(func(m map[string]any) { m["inboxName"] = "agents..a" }),
		"subject leading dot": valid(func(m map[string]any) { m["inboxName"] = ".agents" }),
		"subject space":       valid(func(m map[string]any) { m["inboxName"] = "agents. a" }),
		"url as subject ok?": valid(func(m map[string]any) {
			m["inboxDestinationType"] = mapping.TypeHTTPEndpoint
			m["inboxName"] = "agents.a"
		}),
		"relative url": valid(func(m map[string]any) {
			m["inboxDestinationType"] = mapping.TypeHTTPEndpoint
			m["inboxName"] = "/hook"
		}),
		"ftp url": valid(func(m map[string]any) {
			m["inboxDestinationType"] = mapping.TypeHTTPEndpoint
			m["inboxName"] = "ftp://x.example/hook"
		}),
		"url without host": valid(func(m map[string]any) {
			m["inboxDestinationType"] = mapping.TypeHTTPEndpoint
			m["inboxName"] = "https:///hook"
		}),
		"bad status":         valid(func(m map[string]any) { m["status"] = "active" }),
		"long description":   valid(func(m map[string]any) { m["description"] = long }),
		"long ownerTeam":     valid(func(m map[string]any) { m["ownerTeam"] = long }),
		"long updatedBy":     valid(func(m map[string]any) { m["updatedBy"] = long }),
		"secret without pfx": valid(func(m map[string]any) { m["signingSecrets"] = []string{"c2VjcmV0"} }),
		"secret not base64":  valid(func(m map[string]any) { m["signingSecrets"] = []string{"whsec_!!!"} }),
		"secret empty":       valid(func(m map[string]any) { m["signingSecrets"] = []string{"whsec_"} }),
		"secret 1-byte key":  valid(func(m map[string]any) { m["signingSecrets"] = []string{"whsec_eA=="} }),
		"secret 23-byte key": valid(func(m map[string]any) {
			m["signingSecrets"] = []string{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 23))}
		}),
		"secret 65-byte key": valid(func(m map[string]any) {
			m["signingSecrets"] = []string{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65))}
		}),
		"status wrong type": valid(func(m map[string]any) { m["status"] = 5 }),
		"malformed JSON":    `{"aiAgentAddress": "a@x",`,
		"not an object":     `["a@x"]`,
		"null body":         `null`,
		"empty body":        ``,
		"trailing garbage":  `{"aiAgentAddress": "a@x", "inboxDestinationType": "NATS_SUBJECT", "inboxName": "agents.a"} x`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b.call(t, "POST", "/v1/agent-inboxes", body, "").requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
		})
	}

	t.Run("too large", func(t *testing.T) {
		t.Parallel()
		big := valid(func(m map[string]any) { m["padding"] = strings.Repeat("x", MaxBodyBytes) })
		b.call(t, "POST", "/v1/agent-inboxes", big, "").requireError(t, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	})
	t.Run("unknown fields ignored, limits inclusive", func(t *testing.T) {
		t.Parallel()
		body := valid(func(m map[string]any) {
			m["aiAgentAddress"] = strings.Repeat("é", 128) // 256 bytes
			m["whatever"] = map[string]any{"x": 1}
			m["description"] = strings.Repeat("d", mapping.MaxTextBytes)
			m["inboxDestinationType"] = mapping.TypeHTTPEndpoint
			m["inboxName"] = "HTTPS://agents.example.com:8443/hooks/a?x=1"
			m["status"] = mapping.StatusInactive
		})
		a := b.call(t, "POST", "/v1/agent-inboxes", body, "")
		require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
		require.Equal(t, mapping.StatusInactive, a.mapping(t).Status)
	})
}

func TestServerPagination(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	var want []string
	for i := range 25 {
		addr := fmt.Sprintf("agent-%02d", i)
		switch i {
		case 3:
			addr = "a/b%c@d"
		case 7:
			addr = "агент@пример.рф"
		case 11:
			addr = "代理/销售"
		case 13:
			addr = "Zeta" // byte order: upper case sorts before lower case
		}
		want = append(want, addr)
		a := b.call(t, "POST", "/v1/agent-inboxes", map[string]any{"aiAgentAddress": addr, "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": fmt.Sprintf("agents.n%d", i)}, "")
		require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
	}
	sort.Strings(want) // Go sorts strings by bytes, as the "C" collation does

	var got []string
	cursor, pages := "", 0
	for {
		path := "/v1/agent-inboxes?limit=10"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		a := b.call(t, "GET", path, nil, "")
		require.Equal(t, http.StatusOK, a.status, "%s", a.body)
		var page ListPage
		require.NoError(t, json.Unmarshal(a.body, &page))
		pages++
		for _, m := range page.Items {
			got = append(got, m.AIAgentAddress)
		}
		if page.NextCursor == "" {
			_, has := a.json(t)["nextCursor"]
			require.False(t, has, "nextCursor is absent on the last page")
			require.Len(t, page.Items, 5)
			break
		}
		require.Len(t, page.Items, 10)
		cursor = page.NextCursor
	}
	require.Equal(t, 3, pages)
	require.Equal(t, want, got)

	all := b.call(t, "GET", "/v1/agent-inboxes", nil, "")
	require.Len(t, all.json(t)["items"], 25, "limit defaults to 100")
	require.Len(t, b.call(t, "GET", "/v1/agent-inboxes?limit=5000", nil, "").json(t)["items"], 25, "limit above 1000 is lowered")
	for _, q := range []string{"limit=0", "limit=-1", "limit=abc", "cursor=%25%25%25", "cursor=!"} {
		b.call(t, "GET", "/v1/agent-inboxes?"+q, nil, "").requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
	}

	empty := setupServer(t, "")
	e := empty.call(t, "GET", "/v1/agent-inboxes", nil, "")
	require.Equal(t, http.StatusOK, e.status)
	require.JSONEq(t, `{"items": []}`, string(e.body))
}

// oddAddresses are valid addresses that stress path escaping.
var oddAddresses = []string{
	"a/b%c@d", "агент-продаж@пример.рф", "代理/销售@例子.中国", "..", ".", "a/../b", "x%2Fy", "%", "100%",
	"q?x=1#frag", "a+b:c;d=e,f", "emoji-🤖@example.com", "trailing/", "/leading", "a//b", "ا@مثال.مصر",
}

func TestServerOddAddresses(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	for i, addr := range oddAddresses {
		a := b.call(t, "POST", "/v1/agent-inboxes", map[string]any{"aiAgentAddress": addr, "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": fmt.Sprintf("agents.odd%d", i)}, "")
		require.Equal(t, http.StatusCreated, a.status, "%q: %s", addr, a.body)
	}
	for i, addr := range oddAddresses {
		got := b.call(t, "GET", agentPath(addr), nil, "")
		require.Equal(t, http.StatusOK, got.status, "%q: %s", addr, got.body)
		require.Equal(t, addr, got.mapping(t).AIAgentAddress)
		require.Equal(t, fmt.Sprintf("agents.odd%d", i), got.mapping(t).InboxName, "%q reached another agent", addr)
		upd := b.call(t, "PUT", agentPath(addr), map[string]any{"description": "seen"}, "")
		require.Equal(t, http.StatusOK, upd.status, "%q: %s", addr, upd.body)
	}
	// Plain '/' still reaches the agent (the wildcard takes the rest of the path).
	require.Equal(t, http.StatusOK, b.call(t, "GET", "/v1/agent-inboxes/a/b%25c@d", nil, "").status)
	for _, addr := range oddAddresses {
		require.Equal(t, http.StatusNoContent, b.call(t, "DELETE", agentPath(addr), nil, "").status, addr)
	}
	require.JSONEq(t, `{"items": []}`, string(b.call(t, "GET", "/v1/agent-inboxes", nil, "").body))
}

func TestServerHealthCheck(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	create := func(addr, status string) {
		a := b.call(t, "POST", "/v1/agent-inboxes", map[string]any{"aiAgentAddress": addr, "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": "agents.h", "status": status}, "")
		require.Equal(t, http.StatusOK/100, a.status/100, "%s", a.body)
	}
	report := func(body map[string]any) mapping.Mapping {
		t.Helper()
		a := b.call(t, "POST", "/v1/agent-health-check", body, "")
		require.Equal(t, http.StatusOK, a.status, "%s", a.body)
		return a.mapping(t)
	}

	t.Run("unhealthy deactivates, healthy reactivates", func(t *testing.T) {
		create("h1", mapping.StatusActive)
		m := report(map[string]any{"aiAgentAddress": "h1", "status": mapping.HealthUnhealthy, "details": "disk full"})
		require.Equal(t, mapping.StatusInactive, m.Status)
		require.NotNil(t, m.Health)
		require.Equal(t, mapping.HealthUnhealthy, m.Health.Status)
		require.Equal(t, "disk full", m.Health.Details)
		require.True(t, m.Health.InactiveByHealthCheck)
		require.Equal(t, "health-check", m.UpdatedBy)
		require.WithinDuration(t, time.Now(), m.Health.ReportedAt, time.Minute)

		m = report(map[string]any{"aiAgentAddress": "h1", "status": mapping.HealthHealthy, "details": map[string]any{"latencyMs": 12}})
		require.Equal(t, mapping.StatusActive, m.Status)
		require.False(t, m.Health.InactiveByHealthCheck)
		require.JSONEq(t, `{"latencyMs":12}`, m.Health.Details)
		require.Equal(t, m, b.call(t, "GET", agentPath("h1"), nil, "").mapping(t), "stored")
	})
	t.Run("an admin's INACTIVE is not overridden", func(t *testing.T) {
		create("h2", mapping.StatusInactive)
		require.Equal(t, mapping.StatusInactive, report(map[string]any{"aiAgentAddress": "h2", "status": mapping.HealthHealthy}).Status)
		require.Equal(t, mapping.StatusInactive, report(map[string]any{"aiAgentAddress": "h2", "status": mapping.HealthUnhealthy}).Status)
		require.Equal(t, mapping.StatusInactive, report(map[string]any{"aiAgentAddress": "h2", "status": mapping.HealthHealthy}).Status)

		// Deactivated by a health check, then confirmed INACTIVE by an admin.
		create("h3", mapping.StatusActive)
		report(map[string]any{"aiAgentAddress": "h3", "status": mapping.HealthUnhealthy})
		require.Equal(t, http.StatusOK, b.call(t, "PUT", agentPath("h3"), map[string]any{"status": mapping.StatusInactive}, "").status)
		require.Equal(t, mapping.StatusInactive, report(map[string]any{"aiAgentAddress": "h3", "status": mapping.HealthHealthy}).Status)
	})
	t.Run("stale reports change nothing", func(t *testing.T) {
		create("h4", mapping.StatusActive)
		now := time.Now().UTC()
		m := report(map[string]any{"aiAgentAddress": "h4", "status": mapping.HealthUnhealthy, "timestamp": mapping.FormatTime(now)})
		require.Equal(t, mapping.StatusInactive, m.Status)
		require.Equal(t, now.Truncate(time.Millisecond), m.Health.ReportedAt)
		m = report(map[string]any{"aiAgentAddress": "h4", "status": mapping.HealthHealthy, "timestamp": mapping.FormatTime(now.Add(-time.Minute))})
		require.Equal(t, mapping.StatusInactive, m.Status, "an older HEALTHY must not reactivate")
		require.Equal(t, mapping.HealthUnhealthy, m.Health.Status)
		// A report from the future is taken as now, so it cannot block later ones.
		m = report(map[string]any{"aiAgentAddress": "h4", "status": mapping.HealthHealthy, "timestamp": mapping.FormatTime(now.Add(time.Hour))})
		require.Equal(t, mapping.StatusActive, m.Status)
		require.WithinDuration(t, time.Now(), m.Health.ReportedAt, time.Minute)
	})
	t.Run("errors", func(t *testing.T) {
		b.call(t, "POST", "/v1/agent-health-check", map[string]any{"aiAgentAddress": "nobody", "status": mapping.HealthHealthy}, "").
			requireError(t, http.StatusNotFound, "NOT_FOUND")
		for _, body := range []any{
			map[string]any{"aiAgentAddress": "h1", "status": "SICK"},
			map[string]any{"aiAgentAddress": "h1"},
			map[string]any{"status": mapping.HealthHealthy},
			map[string]any{"aiAgentAddress": "h1", "status": mapping.HealthHealthy, "timestamp": "yesterday"},
			map[string]any{"aiAgentAddress": "h1", "status": mapping.HealthHealthy, "details": strings.Repeat("x", mapping.MaxDetailsBytes+1)},
			`{"aiAgentAddress": `,
		} {
			b.call(t, "POST", "/v1/agent-health-check", body, "").requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
		}
	})
}

func TestServerAuth(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "ops:s3cret,bare-key")
	body := map[string]any{"aiAgentAddress": "a@x", "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": "agents.a"}

	none := b.call(t, "POST", "/v1/agent-inboxes", body, "")
	none.requireError(t, http.StatusUnauthorized, "UNAUTHORIZED")
	require.NotEmpty(t, none.header.Get("WWW-Authenticate"))
	b.call(t, "GET", agentPath("a@x"), nil, "wrong").requireError(t, http.StatusUnauthorized, "UNAUTHORIZED")
	b.call(t, "GET", "/v1/agent-inboxes", nil, "").requireError(t, http.StatusUnauthorized, "UNAUTHORIZED")
	b.call(t, "POST", "/v1/agent-health-check", map[string]any{}, "").requireError(t, http.StatusUnauthorized, "UNAUTHORIZED")

	ok := b.call(t, "POST", "/v1/agent-inboxes", body, "s3cret")
	require.Equal(t, http.StatusCreated, ok.status, "%s", ok.body)
	require.Equal(t, "ops", ok.mapping(t).UpdatedBy, "updatedBy defaults to the key's name")
	require.Equal(t, http.StatusOK, b.call(t, "GET", agentPath("a@x"), nil, "bare-key").status)

	for _, p := range []string{"/health", "/health/live", "/health/ready", "/metrics", "/openapi.json"} {
		require.Equal(t, http.StatusOK, b.call(t, "GET", p, nil, "").status, p)
	}
}

func TestServerRouteErrors(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	b.call(t, "GET", "/v1/nothing-here", nil, "").requireError(t, http.StatusNotFound, "NOT_FOUND")
	b.call(t, "GET", "/v1/agent-inboxes/", nil, "").requireError(t, http.StatusNotFound, "NOT_FOUND")
	a := b.call(t, "POST", agentPath("a@x"), nil, "")
	a.requireError(t, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
	require.Contains(t, a.header.Get("Allow"), "PUT")
	b.call(t, "PATCH", "/v1/agent-inboxes", nil, "").requireError(t, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
	b.call(t, "GET", "/v1/agent-health-check", nil, "").requireError(t, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
}

func TestServerOperations(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	live := b.call(t, "GET", "/health", nil, "")
	require.JSONEq(t, `{"status":"ok","version":"test-1"}`, string(live.body))
	ready := b.call(t, "GET", "/health/ready", nil, "")
	require.Equal(t, http.StatusOK, ready.status, "%s", ready.body)
	require.Equal(t, "ok", ready.json(t)["dependencies"].(map[string]any)["postgres"])

	require.Equal(t, http.StatusCreated, b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
		"aiAgentAddress": "secret-agent@x", "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": "agents.a"}, "").status)
	b.call(t, "GET", agentPath("secret-agent@x"), nil, "")
	b.call(t, "GET", agentPath("nobody@x"), nil, "")
	b.call(t, "GET", "/no/such/route", nil, "")

	metrics := string(b.call(t, "GET", "/metrics", nil, "").body)
	require.Contains(t, metrics, `msgrouter_cams_http_requests_total{code="201",route="POST /v1/agent-inboxes"} 1`)
	require.Contains(t, metrics, `msgrouter_cams_http_requests_total{code="200",route="GET /v1/agent-inboxes/{aiAgentAddress...}"} 1`)
	require.Contains(t, metrics, `msgrouter_cams_http_requests_total{code="404",route="GET /v1/agent-inboxes/{aiAgentAddress...}"} 1`)
	require.Contains(t, metrics, `msgrouter_cams_http_requests_total{code="404",route="unmatched"} 1`)
	require.Contains(t, metrics, `msgrouter_cams_http_request_duration_seconds_count{route="GET /health/ready"} 1`)
	require.NotContains(t, metrics, "secret-agent", "no raw address in metrics")
	require.NotContains(t, metrics, "/no/such/route", "no raw path in metrics")
}

// TestOpenAPICoversRoutes fails when a registered route is missing from the document
// (or the document lists a route nobody serves). TestOpenAPIDocumentMatchesResponses
// validates the document itself.
func TestOpenAPICoversRoutes(t *testing.T) {
	t.Parallel()
	h := NewHandler(HandlerConfig{Store: &Store{}, Registerer: prometheus.NewRegistry()})
	b := &serverBundle{srv: httptest.NewServer(h)}
	t.Cleanup(b.srv.Close)
	a := b.call(t, "GET", "/openapi.json", nil, "")
	require.Equal(t, http.StatusOK, a.status)
	doc := a.json(t)
	require.Equal(t, "3.0.3", doc["openapi"])
	paths := doc["paths"].(map[string]any)

	served := map[string]bool{}
	for _, p := range h.Patterns() {
		method, path, ok := strings.Cut(p, " ")
		require.True(t, ok, "pattern %q has no method", p)
		path = strings.ReplaceAll(path, "...}", "}")
		served[strings.ToLower(method)+" "+path] = true
		item, ok := paths[path].(map[string]any)
		require.True(t, ok, "route %q is not in openapi.json", p)
		op, ok := item[strings.ToLower(method)].(map[string]any)
		require.True(t, ok, "route %q: method missing from openapi.json", p)
		responses, ok := op["responses"].(map[string]any)
		require.True(t, ok && len(responses) > 0, "route %q documents no response", p)
		if strings.HasPrefix(path, "/v1/") {
			require.Contains(t, responses, "401", "route %q: error answers must be documented", p)
			require.Contains(t, responses, "500", "route %q: error answers must be documented", p)
		}
	}
	for path, item := range paths {
		for method := range item.(map[string]any) {
			if method == "parameters" {
				continue
			}
			require.True(t, served[method+" "+path], "openapi.json documents %s %s, which is not served", method, path)
		}
	}
}

// TestServerRefusesSystemSubjects: the reference CAMS answers 400 to a mapping, new
// or updated, whose NATS inbox is a system subject, and stores nothing.
func TestServerRefusesSystemSubjects(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	ok := b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
		"aiAgentAddress": "existing", "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": "agents.existing",
	}, "")
	require.Equal(t, http.StatusCreated, ok.status, "%s", ok.body)
	for _, s := range mappingtest.SystemSubjects {
		b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
			"aiAgentAddress": "a@x", "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": s,
		}, "").requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
		b.call(t, "PUT", agentPath("existing"), map[string]any{"inboxName": s}, "").
			requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
	}
	b.call(t, "GET", agentPath("a@x"), nil, "").requireError(t, http.StatusNotFound, "NOT_FOUND")
	require.Equal(t, "agents.existing", b.call(t, "GET", agentPath("existing"), nil, "").mapping(t).InboxName)
}
