package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/console"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

const adminKey = "admin-secret"

// fakeCAMS is a CAMS whose answers the test sets, recording what the router sent.
type fakeCAMS struct {
	mu       sync.Mutex
	requests []recorded
	status   int
	body     string
}

type recorded struct {
	method, path, rawPath, auth, body string
}

func (f *fakeCAMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, recorded{r.Method, r.URL.Path, r.URL.RawPath, r.Header.Get("Authorization"), string(b)})
	status, body := f.status, f.body
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (f *fakeCAMS) last(t *testing.T) recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NotEmpty(t, f.requests)
	return f.requests[len(f.requests)-1]
}

func (f *fakeCAMS) answer(status int, body string) {
	f.mu.Lock()
	f.status, f.body = status, body
	f.mu.Unlock()
}

// server mounts the console as the router does (internal/router/service.go): behind
// ADMIN_API_KEYS, with the console's assets open.
func server(t *testing.T, o console.Options) *httptest.Server {
	t.Helper()
	mux := httpapi.NewMux()
	require.NoError(t, console.Mount(mux, o))
	keys, err := auth.Parse("ops:" + adminKey)
	require.NoError(t, err)
	open := func(r *http.Request) bool { return auth.OpenPaths(r) || console.OpenPaths(r) }
	srv := httptest.NewServer(keys.Require(mux, open))
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, u, key, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

func requireError(t *testing.T, code int, body string, wantCode int, wantErr string) map[string]string {
	t.Helper()
	require.Equal(t, wantCode, code, body)
	var e map[string]string
	require.NoError(t, json.Unmarshal([]byte(body), &e), body)
	require.Equal(t, wantErr, e["errorCode"], body)
	require.NotEmpty(t, e["message"])
	return e
}

func TestAssetsAreServedOpenWithTypesAndCSP(t *testing.T) {
	t.Parallel()
	srv := server(t, console.Options{CAMSURL: "http://127.0.0.1:1"})
	for path, ctype := range map[string]string{
		"/console/":            "text/html; charset=utf-8",
		"/console/index.html":  "text/html; charset=utf-8",
		"/console/app.js":      "text/javascript; charset=utf-8",
		"/console/style.css":   "text/css; charset=utf-8",
		"/console/favicon.svg": "image/svg+xml",
	} {
		// No key: the assets are open even though ADMIN_API_KEYS is set.
		code, hdr, body := do(t, http.MethodGet, srv.URL+path, "", "")
		require.Equal(t, http.StatusOK, code, path)
		require.Equal(t, ctype, hdr.Get("Content-Type"), path)
		require.Equal(t, console.CSP, hdr.Get("Content-Security-Policy"), path)
		require.Equal(t, "nosniff", hdr.Get("X-Content-Type-Options"), path)
		require.Equal(t, "DENY", hdr.Get("X-Frame-Options"), path)
		require.NotEmpty(t, body, path)
	}
	require.Contains(t, console.CSP, "script-src 'self'")
	require.NotContains(t, console.CSP, "unsafe-inline")
	require.NotContains(t, console.CSP, "unsafe-eval")

	code, hdr, _ := do(t, http.MethodGet, srv.URL+"/console", "", "")
	require.Equal(t, http.StatusMovedPermanently, code)
	require.Equal(t, "/console/", hdr.Get("Location"))

	for _, p := range []string{"/console/nope.js", "/console/.hidden", "/console/assets/app.js"} {
		code, _, body := do(t, http.MethodGet, srv.URL+p, "", "")
		requireError(t, code, body, http.StatusNotFound, "NOT_FOUND")
	}
	// Only reads are open: a POST to the console needs the key like any admin route.
	code, _, body := do(t, http.MethodPost, srv.URL+"/console/", "", "")
	requireError(t, code, body, http.StatusUnauthorized, "UNAUTHORIZED")
}

// TestAssetsHaveNoInlineCodeOrHTMLSinks guards what the CSP and the escaping rely on:
// no inline script or style in the page, and no API in the script that parses a
// string as HTML or code.
func TestAssetsHaveNoInlineCodeOrHTMLSinks(t *testing.T) {
	t.Parallel()
	srv := server(t, console.Options{CAMSURL: "http://127.0.0.1:1"})
	_, _, page := do(t, http.MethodGet, srv.URL+"/console/", "", "")
	for _, m := range regexp.MustCompile(`(?is)<script\b[^>]*>(.*?)</script>`).FindAllStringSubmatch(page, -1) {
		require.Contains(t, m[0], `src="`, "every script is external")
		require.Empty(t, strings.TrimSpace(m[1]), "no inline script")
	}
	require.NotRegexp(t, `(?i)<style|\sstyle=|\son[a-z]+=`, page, "no inline style or event handler")
	_, _, js := do(t, http.MethodGet, srv.URL+"/console/app.js", "", "")
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage", "document.cookie"} {
		require.NotContains(t, js, sink)
	}
	require.Contains(t, js, "sessionStorage")
	require.Contains(t, js, "'Bearer '")
}

func TestAdminRoutesNeedTheKey(t *testing.T) {
	t.Parallel()
	cams := &fakeCAMS{status: 200, body: `{"items":[]}`}
	camsSrv := httptest.NewServer(cams)
	t.Cleanup(camsSrv.Close)
	srv := server(t, console.Options{CAMSURL: camsSrv.URL})
	for _, r := range []string{"GET /v1/agents", "POST /v1/agents", "GET /v1/agents/a@b", "PUT /v1/agents/a@b", "GET /v1/overview", "GET /v1/dead-letters"} {
		method, path, _ := strings.Cut(r, " ")
		for _, key := range []string{"", "wrong"} {
			code, _, body := do(t, method, srv.URL+path, key, "{}")
			requireError(t, code, body, http.StatusUnauthorized, "UNAUTHORIZED")
		}
	}
	require.Empty(t, cams.requests, "nothing reached CAMS without a key")
	code, _, body := do(t, http.MethodGet, srv.URL+"/v1/agents", adminKey, "")
	require.Equal(t, http.StatusOK, code, body)
}

const secretMapping = `{"aiAgentAddress":"a/b@example.com","inboxDestinationType":"HTTP_ENDPOINT",
 "inboxName":"https://user:hunter2@agents.example.com/inbox","status":"ACTIVE","ownerTeam":"Sales",
 "registrationTimestamp":"2026-01-01T00:00:00.000Z","lastUpdatedTimestamp":"2026-01-01T00:00:00.000Z",
 "signingSecrets":["whsec_c2VjcmV0LXNpZ25pbmcta2V5LTAxMjM0NTY3","whsec_b3RoZXItc2lnbmluZy1rZXktMDEyMzQ1Njc4"],
 "inboxAuth":{"type":"BEARER","token":"tok-hunter3"},"futureSecret":"hunter4",
 "health":{"status":"HEALTHY","reportedAt":"2026-01-01T00:00:00.000Z"}}`

func requireNoSecrets(t *testing.T, body string) {
	t.Helper()
	for _, s := range []string{"hunter2", "hunter3", "hunter4", "whsec_", "token", "futureSecret"} {
		require.NotContains(t, body, s)
	}
}

func TestAgentsProxyMasksSecrets(t *testing.T) {
	t.Parallel()
	cams := &fakeCAMS{}
	camsSrv := httptest.NewServer(cams)
	t.Cleanup(camsSrv.Close)
	srv := server(t, console.Options{CAMSURL: camsSrv.URL + "/", CAMSAPIKey: "cams-key"})

	cams.answer(http.StatusOK, secretMapping)
	code, _, body := do(t, http.MethodGet, srv.URL+"/v1/agents/"+url.PathEscape("a/b@example.com"), adminKey, "")
	require.Equal(t, http.StatusOK, code, body)
	requireNoSecrets(t, body)
	got := cams.last(t)
	require.Equal(t, "Bearer cams-key", got.auth, "the router calls CAMS with CAMS_API_KEY, not the caller's key")
	require.Equal(t, "/v1/agent-inboxes/a/b@example.com", got.path)
	require.Equal(t, "/v1/agent-inboxes/a%2Fb@example.com", got.rawPath, "the address is path-escaped (DESIGN §4)")
	var a console.Agent
	require.NoError(t, json.Unmarshal([]byte(body), &a))
	require.Equal(t, "a/b@example.com", a.AIAgentAddress)
	require.Equal(t, "https://agents.example.com/inbox", a.InboxName, "credentials in the URL are removed")
	require.True(t, a.SigningSecretsSet)
	require.Equal(t, 2, a.SigningSecretsCount)
	require.True(t, a.InboxAuthSet)
	require.Equal(t, "BEARER", a.InboxAuthType)
	require.Equal(t, "Sales", a.OwnerTeam)
	require.JSONEq(t, `{"status":"HEALTHY","reportedAt":"2026-01-01T00:00:00.000Z"}`, string(a.Health))

	cams.answer(http.StatusOK, `{"items":[`+secretMapping+`,{"aiAgentAddress":"plain@example.com","inboxDestinationType":"NATS_SUBJECT","inboxName":"agents.x","status":"INACTIVE"}],"nextCursor":"abc"}`)
	code, _, body = do(t, http.MethodGet, srv.URL+"/v1/agents?limit=2&cursor=xyz&junk=1", adminKey, "")
	require.Equal(t, http.StatusOK, code, body)
	requireNoSecrets(t, body)
	got = cams.last(t)
	require.Equal(t, "/v1/agent-inboxes", got.path)
	var p console.AgentPage
	require.NoError(t, json.Unmarshal([]byte(body), &p))
	require.Len(t, p.Items, 2)
	require.False(t, p.Items[1].SigningSecretsSet)
	require.False(t, p.Items[1].InboxAuthSet)
	require.Equal(t, "abc", *p.NextCursor)

	// Writes go through with the caller's key name as updatedBy; the answer is masked.
	cams.answer(http.StatusCreated, secretMapping)
	code, _, body = do(t, http.MethodPost, srv.URL+"/v1/agents", adminKey, `{"aiAgentAddress":"x@example.com","inboxName":"agents.x"}`)
	require.Equal(t, http.StatusCreated, code, body)
	requireNoSecrets(t, body)
	got = cams.last(t)
	require.Equal(t, http.MethodPost, got.method)
	require.JSONEq(t, `{"aiAgentAddress":"x@example.com","inboxName":"agents.x","updatedBy":"ops"}`, got.body)

	cams.answer(http.StatusOK, secretMapping)
	code, _, body = do(t, http.MethodPut, srv.URL+"/v1/agents/x@example.com", adminKey, `{"status":"INACTIVE","updatedBy":"alice"}`)
	require.Equal(t, http.StatusOK, code, body)
	got = cams.last(t)
	require.Equal(t, http.MethodPut, got.method)
	require.Equal(t, "/v1/agent-inboxes/x@example.com", got.path)
	require.JSONEq(t, `{"status":"INACTIVE","updatedBy":"alice"}`, got.body)

	code, _, body = do(t, http.MethodPut, srv.URL+"/v1/agents/x@example.com", adminKey, `[1]`)
	requireError(t, code, body, http.StatusBadRequest, "INVALID_REQUEST")
}

func TestAgentsProxyErrors(t *testing.T) {
	t.Parallel()
	cams := &fakeCAMS{}
	camsSrv := httptest.NewServer(cams)
	srv := server(t, console.Options{CAMSURL: camsSrv.URL})

	cams.answer(http.StatusNotFound, `{"errorCode":"NOT_FOUND","message":"no agent is registered under \"x\""}`)
	code, _, body := do(t, http.MethodGet, srv.URL+"/v1/agents/x", adminKey, "")
	e := requireError(t, code, body, http.StatusNotFound, "NOT_FOUND")
	require.Contains(t, e["message"], "no agent is registered")

	cams.answer(http.StatusConflict, `{"errorCode":"CONFLICT","message":"exists","extra":"whsec_x"}`)
	code, _, body = do(t, http.MethodPost, srv.URL+"/v1/agents", adminKey, `{}`)
	requireError(t, code, body, http.StatusConflict, "CONFLICT")
	require.NotContains(t, body, "whsec_")

	// CAMS refusing the router's key must not look like the console's key being wrong.
	cams.answer(http.StatusUnauthorized, `{"errorCode":"UNAUTHORIZED","message":"the bearer key is not valid"}`)
	code, _, body = do(t, http.MethodGet, srv.URL+"/v1/agents", adminKey, "")
	e = requireError(t, code, body, http.StatusServiceUnavailable, "UNAVAILABLE")
	require.Contains(t, e["message"], "CAMS_API_KEY")

	cams.answer(http.StatusInternalServerError, `oops`)
	code, _, body = do(t, http.MethodGet, srv.URL+"/v1/agents", adminKey, "")
	requireError(t, code, body, http.StatusServiceUnavailable, "UNAVAILABLE")

	cams.answer(http.StatusOK, `not json`)
	code, _, body = do(t, http.MethodGet, srv.URL+"/v1/agents/x", adminKey, "")
	requireError(t, code, body, http.StatusServiceUnavailable, "UNAVAILABLE")

	camsSrv.Close()
	code, _, body = do(t, http.MethodGet, srv.URL+"/v1/agents", adminKey, "")
	e = requireError(t, code, body, http.StatusServiceUnavailable, "UNAVAILABLE")
	require.Contains(t, e["message"], "CAMS is not reachable")
}

func TestMountRejectsABadCAMSURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "127.0.0.1:8001", "ftp://x"} {
		require.Error(t, console.Mount(httpapi.NewMux(), console.Options{CAMSURL: u}), u)
	}
}

// seed inserts messages straight into a migrated database: status, reason, agent,
// failed how long ago (failures only), whether it is in the outbox.
func seed(t *testing.T, pool *pgxpool.Pool, status, reason, agent string, failedAgo time.Duration) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	id := uuid.Must(uuid.NewV7())
	var r *string
	if reason != "" {
		r = &reason
	}
	_, err := pool.Exec(ctx, `INSERT INTO messages (message_id, ai_agent_address, status, reason, accepted_at, last_error, attempts)
		VALUES ($1, $2, $3, $4, now(), 'inbox answered 500', 3)`, id, agent, status, r)
	require.NoError(t, err)
	switch status {
	case "PENDING":
		_, err = pool.Exec(ctx, `INSERT INTO outbox (message_id) VALUES ($1)`, id)
	case "REJECTED", "DEAD_LETTERED":
		_, err = pool.Exec(ctx, `INSERT INTO failures (message_id, status, reason, ai_agent_address, failed_at)
			VALUES ($1, $2, $3, $4, now() - $5::interval)`, id, status, reason, agent, failedAgo.String())
	}
	require.NoError(t, err)
	return id
}

func TestOverviewCountsAndBreakers(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	reg := prometheus.NewRegistry()
	m := breaker.NewMetrics(reg)
	m.Observe("http", 2)
	m.Observe("cams", 0)
	m.Observe("nats", 1)
	delivered := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "msgrouter_deliveries_total"}, []string{"destination_type", "outcome"})
	reg.MustRegister(delivered)
	delivered.WithLabelValues("HTTP_ENDPOINT", "delivered").Add(3)
	delivered.WithLabelValues("NATS_SUBJECT", "delivered").Add(4)
	delivered.WithLabelValues("NATS_SUBJECT", "dead_lettered").Add(100)
	lag := prometheus.NewGauge(prometheus.GaugeOpts{Name: "msgrouter_consumer_pending_messages"})
	reg.MustRegister(lag)
	lag.Set(42)
	srv := server(t, console.Options{Pool: pool, Gatherer: reg, CAMSURL: "http://127.0.0.1:1"})

	seed(t, pool, "PENDING", "", "a@x", 0)
	seed(t, pool, "PENDING", "AGENT_INACTIVE", "a@x", 0)
	seed(t, pool, "DELIVERED", "", "a@x", 0)
	seed(t, pool, "DEAD_LETTERED", "MAX_ATTEMPTS_EXCEEDED", "a@x", time.Minute)
	seed(t, pool, "REJECTED", "AGENT_NOT_FOUND", "b@x", time.Minute)
	seed(t, pool, "REJECTED", "AGENT_NOT_FOUND", "b@x", time.Minute)

	get := func() console.Overview {
		t.Helper()
		code, _, body := do(t, http.MethodGet, srv.URL+"/v1/overview", adminKey, "")
		require.Equal(t, http.StatusOK, code, body)
		var o console.Overview
		require.NoError(t, json.Unmarshal([]byte(body), &o))
		return o
	}
	o := get()
	require.EqualValues(t, 2, o.Pending)
	require.EqualValues(t, 1, o.Held)
	require.EqualValues(t, 1, o.DeadLettered)
	require.EqualValues(t, 2, o.Rejected)
	require.EqualValues(t, 6, o.ReceivedLast10s)
	require.EqualValues(t, console.CountLimit, o.CountLimit)
	require.EqualValues(t, 7, o.Counters.Delivered)
	require.Equal(t, []console.Breaker{{Name: "http", State: "OPEN"}, {Name: "nats", State: "HALF_OPEN"}}, o.Breakers)
	require.NotEmpty(t, o.Replica)
	require.WithinDuration(t, time.Now(), o.At, time.Minute)
	require.NotNil(t, o.StreamPending)
	require.EqualValues(t, 42, *o.StreamPending)

	// Answers are shared for about a second, then read afresh.
	seed(t, pool, "PENDING", "", "c@x", 0)
	again := get()
	if again.At.Equal(o.At) {
		require.EqualValues(t, 2, again.Pending, "a cached answer is the same answer")
	}
	require.Eventually(t, func() bool { return get().Pending == 3 }, 10*time.Second, 100*time.Millisecond)
	require.Equal(t, o.Replica, get().Replica)
}

func TestDeadLettersFilterPageAndCount(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	srv := server(t, console.Options{Pool: pool, CAMSURL: "http://127.0.0.1:1"})
	var dl []uuid.UUID
	for i := range 5 {
		dl = append(dl, seed(t, pool, "DEAD_LETTERED", "MAX_ATTEMPTS_EXCEEDED", "a@x", time.Duration(10-i)*time.Minute))
	}
	seed(t, pool, "DEAD_LETTERED", "DESTINATION_GONE", "a@x", time.Hour)
	seed(t, pool, "REJECTED", "AGENT_NOT_FOUND", "b@x", time.Minute)
	seed(t, pool, "DELIVERED", "", "a@x", 0)

	get := func(q string) console.DeadLetterPage {
		t.Helper()
		code, _, body := do(t, http.MethodGet, srv.URL+"/v1/dead-letters"+q, adminKey, "")
		require.Equal(t, http.StatusOK, code, body)
		var p console.DeadLetterPage
		require.NoError(t, json.Unmarshal([]byte(body), &p))
		return p
	}
	all := get("")
	require.EqualValues(t, 7, all.Count)
	require.Len(t, all.Items, 7)
	require.Nil(t, all.NextCursor)

	// Newest failure first, paged by cursor, the count covering every page.
	p := get("?aiAgentAddress=a@x&reason=MAX_ATTEMPTS_EXCEEDED&limit=2")
	require.EqualValues(t, 5, p.Count)
	var seen []uuid.UUID
	for {
		for _, it := range p.Items {
			seen = append(seen, it.MessageID)
			require.Equal(t, "DEAD_LETTERED", it.Status)
			require.Equal(t, 3, it.Attempts)
			require.Equal(t, "inbox answered 500", *it.LastError)
		}
		if p.NextCursor == nil {
			break
		}
		p = get("?aiAgentAddress=a@x&reason=MAX_ATTEMPTS_EXCEEDED&limit=2&cursor=" + url.QueryEscape(*p.NextCursor))
	}
	require.Equal(t, []uuid.UUID{dl[4], dl[3], dl[2], dl[1], dl[0]}, seen)

	since := url.QueryEscape(time.Now().Add(-8*time.Minute - 30*time.Second).UTC().Format(time.RFC3339))
	require.EqualValues(t, 3, get("?status=DEAD_LETTERED&since="+since).Count) // failed 6, 7 and 8 minutes ago; 9, 10 and 60 are out
	require.EqualValues(t, 1, get("?status=REJECTED").Count)

	for _, q := range []string{"?status=DELIVERED", "?since=yesterday", "?limit=0", "?limit=501", "?cursor=nope"} {
		code, _, body := do(t, http.MethodGet, srv.URL+"/v1/dead-letters"+q, adminKey, "")
		requireError(t, code, body, http.StatusBadRequest, "INVALID_REQUEST")
	}
}

// TestRoutesAreInTheRoutersOpenAPI checks the router's OpenAPI document describes
// every route Mount adds (the redirect from /console to /console/ aside).
func TestRoutesAreInTheRoutersOpenAPI(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../router/openapi.json")
	require.NoError(t, err)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(b, &doc))
	mux := httpapi.NewMux()
	require.NoError(t, console.Mount(mux, console.Options{CAMSURL: "http://127.0.0.1:1"}))
	require.NotEmpty(t, mux.Patterns())
	for _, p := range mux.Patterns() {
		if p == "GET /console" {
			continue
		}
		method, path, _ := strings.Cut(p, " ")
		op, ok := doc.Paths[path][strings.ToLower(method)]
		require.True(t, ok, "openapi.json documents %s", p)
		var o struct {
			Responses map[string]json.RawMessage `json:"responses"`
		}
		require.NoError(t, json.Unmarshal(op, &o))
		require.NotEmpty(t, o.Responses, p)
	}
}

// TestOpenRouterNeedsNoKey: without ADMIN_API_KEYS (make run) the console's routes
// answer without a key, as the rest of the admin API does.
func TestOpenRouterNeedsNoKey(t *testing.T) {
	t.Parallel()
	cams := &fakeCAMS{status: http.StatusOK, body: `{"items":[]}`}
	camsSrv := httptest.NewServer(cams)
	t.Cleanup(camsSrv.Close)
	mux := httpapi.NewMux()
	require.NoError(t, console.Mount(mux, console.Options{CAMSURL: camsSrv.URL}))
	keys, err := auth.Parse("")
	require.NoError(t, err)
	srv := httptest.NewServer(keys.Require(mux, console.OpenPaths))
	t.Cleanup(srv.Close)
	code, _, body := do(t, http.MethodGet, srv.URL+"/v1/agents", "", "")
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"items":[],"nextCursor":null}`, body)
	require.Empty(t, cams.last(t).auth, "no CAMS_API_KEY, no Authorization header")
	code, _, _ = do(t, http.MethodGet, srv.URL+"/console/", "", "")
	require.Equal(t, http.StatusOK, code)
}
