package router_test

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/apiclient"
	"github.com/msgrouter/msgrouter/internal/camsserver"
	"github.com/msgrouter/msgrouter/internal/router"
	"github.com/msgrouter/msgrouter/internal/testutil/inboxtest"
	"github.com/msgrouter/msgrouter/internal/testutil/logtest"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

// lastHeader returns the headers of the last request inbox got for path, nil for none.
func lastHeader(inbox *inboxtest.Server, path string) http.Header {
	var h http.Header
	for _, r := range inbox.Requests() {
		if r.Path == path {
			h = r.Header
		}
	}
	return h
}

func headerNames(h http.Header) []string {
	var out []string
	for k := range h {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestInboxAuth (issue 15, DESIGN §4): each credential type reaches a real HTTP
// inbox in the right header and nothing else changes; a credentials change in CAMS
// applies within CAMS_CACHE_TTL; a 401/403 is a failed attempt whose lastError says
// the inbox refused the credentials; the planted secrets never show in the router's
// or CAMS's logs, /metrics, the admin API or CAMS's answers.
func TestInboxAuth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var camsLogs, routerLogs logtest.Buffer
	camsReg := prometheus.NewRegistry()
	camsH := camsserver.NewHandler(camsserver.HandlerConfig{
		Store:  camsserver.NewStore(pgtest.New(t)),
		Logger: slog.New(slog.NewJSONHandler(&camsLogs, &slog.HandlerOptions{Level: slog.LevelDebug})), Registerer: camsReg,
	})
	camsSrv := httptest.NewServer(camsH)
	t.Cleanup(camsSrv.Close)
	client := apiclient.New(10*time.Second, 2)
	client.CAMSURL = camsSrv.URL

	const ttl = time.Second
	e := setup(t, map[string]string{"CAMS_API_URL": camsSrv.URL, "CAMS_CACHE_TTL": ttl.String(), "LOG_LEVEL": "debug", "DELIVERY_MAX_ATTEMPTS": "100"},
		router.Options{Logger: slog.New(slog.NewJSONHandler(&routerLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	inbox := inboxtest.New(t, http.StatusNoContent)

	planted := map[string]string{
		"bearer":   "planted-bearer-" + uuid.NewString(),
		"header":   "planted-apikey-" + uuid.NewString(),
		"password": "planted-pass-" + uuid.NewString(),
		"rotated":  "planted-rotated-" + uuid.NewString(),
		"refused":  "planted-refused-" + uuid.NewString(),
	}
	sig := "whsec_" + base64.StdEncoding.EncodeToString([]byte("planted-signing-key-0123456789"))
	register := func(addr string, auth *apiclient.InboxAuth, secrets []string) {
		t.Helper()
		_, err := client.CreateAgent(ctx, &apiclient.Agent{AIAgentAddress: addr, InboxDestinationType: apiclient.TypeHTTPEndpoint,
			InboxName: inbox.URL + "/" + addr, InboxAuth: auth, SigningSecrets: secrets})
		require.NoError(t, err)
	}
	register("plain", nil, []string{sig})
	register("bearer", &apiclient.InboxAuth{Type: "BEARER", Token: planted["bearer"]}, []string{sig})
	register("header", &apiclient.InboxAuth{Type: "HEADER", Name: "X-API-Key", Value: planted["header"]}, []string{sig})
	register("basic", &apiclient.InboxAuth{Type: "BASIC", Username: "agent-user", Password: planted["password"]}, []string{sig})

	send := func(addr string) string {
		id := uuid.NewString()
		e.publish(body(addr, `{"hello":"world"}`), id)
		return id
	}
	var ids []string
	for _, a := range []string{"plain", "bearer", "header", "basic"} {
		id := send(a)
		ids = append(ids, id)
		e.waitStatus(id, "DELIVERED")
	}
	plain := lastHeader(inbox, "/plain")
	require.Empty(t, plain.Values("Authorization"))
	require.Empty(t, plain.Values("X-Api-Key"))
	want := map[string]struct{ header, value string }{
		"bearer": {"Authorization", "Bearer " + planted["bearer"]},
		"header": {"X-Api-Key", planted["header"]},
		"basic":  {"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("agent-user:"+planted["password"]))},
	}
	for addr, w := range want {
		h := lastHeader(inbox, "/"+addr)
		require.Equal(t, []string{w.value}, h.Values(w.header), addr)
		// Nothing else changes: the same headers as the agent without credentials,
		// plus the one carrying them.
		require.ElementsMatch(t, append(headerNames(plain), w.header), headerNames(h), addr)
		for _, k := range []string{"Content-Type", "Webhook-Signature", "Webhook-Id", "X-Message-Id", "Idempotency-Key"} {
			require.NotEmpty(t, h.Get(k), "%s: %s", addr, k)
		}
	}

	// A credentials change in CAMS applies within CAMS_CACHE_TTL (plus the time a
	// message takes): no restart, nothing stored by the router.
	_, err := client.UpdateAgent(ctx, "bearer", &apiclient.AgentUpdate{InboxAuth: &apiclient.InboxAuth{Type: "BEARER", Token: planted["rotated"]}})
	require.NoError(t, err)
	changed := time.Now()
	require.Eventually(t, func() bool {
		id := send("bearer")
		ids = append(ids, id)
		e.waitStatus(id, "DELIVERED")
		return lastHeader(inbox, "/bearer").Get("Authorization") == "Bearer "+planted["rotated"]
	}, ttl+10*time.Second, 50*time.Millisecond)
	t.Logf("new credentials in use %s after the change (CAMS_CACHE_TTL %s)", time.Since(changed).Round(10*time.Millisecond), ttl)

	// 401 with credentials, 403 without: failed attempts that say why.
	register("refused", &apiclient.InboxAuth{Type: "BEARER", Token: planted["refused"]}, nil)
	register("forbidden", nil, nil)
	inbox.Answer("/refused", http.StatusUnauthorized)
	inbox.Answer("/forbidden", http.StatusForbidden)
	for addr, text := range map[string]string{"refused": "the inbox refused the credentials", "forbidden": "without credentials: set the agent's inboxAuth"} {
		id := send(addr)
		ids = append(ids, id)
		var last apiclient.Message
		require.Eventually(t, func() bool {
			_, last = e.get(id)
			return last.Attempts >= 1 && strings.Contains(last.LastError, text)
		}, 20*time.Second, 20*time.Millisecond, "%s: lastError %q", addr, last.LastError)
		require.Equal(t, "PENDING", last.Status, "a failed attempt, retried")
	}

	// Never shown: logs, metrics, admin API, CAMS answers.
	outputs := map[string]string{"router logs": routerLogs.String(), "CAMS logs": camsLogs.String()}
	httpGet := func(url string) string {
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	outputs["router /metrics"] = httpGet(e.adminURL + "/metrics")
	// Keep-alive at work: every delivery above went to one inbox host, on fewer
	// connections than deliveries (the router's dial counter, issue 11).
	m := regexp.MustCompile(`(?m)^msgrouter_delivery_http_dials_total (\d+)$`).FindStringSubmatch(outputs["router /metrics"])
	require.NotNil(t, m, "the dial counter is exported")
	dials, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	require.Positive(t, dials)
	require.Less(t, dials, len(ids), "connections are reused")
	outputs["CAMS /metrics"] = httpGet(camsSrv.URL + "/metrics")
	outputs["admin list"] = httpGet(e.adminURL + "/v1/messages?limit=1000")
	for _, id := range ids {
		outputs["admin get "+id] = httpGet(e.adminURL + "/v1/messages/" + id)
	}
	outputs["CAMS list"] = httpGet(camsSrv.URL + "/v1/agent-inboxes")
	for _, a := range []string{"bearer", "header", "basic"} {
		outputs["CAMS get "+a] = httpGet(camsSrv.URL + "/v1/agent-inboxes/" + a)
	}
	require.Contains(t, outputs["CAMS list"], `"***"`)
	require.Contains(t, routerLogs.String(), "delivery attempt failed", "the logs were captured")
	secrets := []string{sig[6:], base64.StdEncoding.EncodeToString([]byte("agent-user:" + planted["password"]))}
	for _, p := range planted {
		secrets = append(secrets, p)
	}
	for where, text := range outputs {
		for _, s := range secrets {
			require.NotContains(t, text, s, "a secret leaked into %s", where)
		}
	}
}
