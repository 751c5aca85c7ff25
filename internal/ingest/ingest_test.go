package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/ingest"
	"github.com/msgrouter/msgrouter/internal/message"
	"github.com/msgrouter/msgrouter/internal/ratelimit"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/testutil/fakeclock"
	"github.com/msgrouter/msgrouter/internal/testutil/logtest"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
	"github.com/msgrouter/msgrouter/internal/testutil/promtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a handler publishing to a real in-process JetStream server.
type fixture struct {
	t    testing.TB
	srv  *natstest.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	h    *ingest.Handler
	reg  *prometheus.Registry
	logs *logtest.Buffer
}

func setup(t testing.TB, mod ...func(*ingest.Config)) *fixture {
	t.Helper()
	srv := natstest.Start(t)
	// The same options as Run: no reconnect buffer.
	nc, err := stream.Connect(config.NATS{URL: srv.URL}, "ingest-test", nats.ReconnectBufSize(-1), nats.ReconnectWait(20*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = stream.Ensure(t.Context(), js)
	require.NoError(t, err)

	f := &fixture{t: t, srv: srv, nc: nc, js: js, reg: prometheus.NewRegistry(), logs: &logtest.Buffer{}}
	cfg := ingest.Config{
		JS: js, NC: nc, Registerer: f.reg, Gatherer: f.reg, Version: "test",
		PublishTimeout: 2 * time.Second,
		Logger:         slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mod {
		m(&cfg)
	}
	f.h, err = ingest.NewHandler(cfg)
	require.NoError(t, err)
	return f
}

type request struct {
	method, path, body string
	header             map[string]string
	remoteAddr         string
}

func (f *fixture) do(r request) *httptest.ResponseRecorder {
	f.t.Helper()
	req := httptest.NewRequestWithContext(f.t.Context(), cmpOr(r.method, http.MethodPost), cmpOr(r.path, "/v1/messages"), strings.NewReader(r.body))
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	if r.remoteAddr != "" {
		req.RemoteAddr = r.remoteAddr
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

func (f *fixture) post(body string, header ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	h := map[string]string{}
	for i := 0; i+1 < len(header); i += 2 {
		h[header[i]] = header[i+1]
	}
	return f.do(request{body: body, header: h})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// accepted checks a 202 and returns the messageId.
func accepted(t testing.TB, rec *httptest.ResponseRecorder) string {
	t.Helper()
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var got map[string]string
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	id := got["messageId"]
	u, err := uuid.Parse(id)
	require.NoError(t, err)
	require.Equal(t, u.String(), id, "lower-case, hyphenated")
	return id
}

// refused checks an error answer and its body.
func refused(t testing.TB, rec *httptest.ResponseRecorder, status int, code string) httpBody {
	t.Helper()
	require.Equal(t, status, rec.Code, rec.Body.String())
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var b httpBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &b))
	require.Equal(t, code, b.ErrorCode)
	require.NotEmpty(t, b.Message)
	return b
}

type httpBody struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

// stored returns every message in the stream.
func (f *fixture) stored() []*jetstream.RawStreamMsg {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // also used from Cleanup
	defer cancel()
	s, err := f.js.Stream(ctx, stream.Name)
	require.NoError(f.t, err)
	info, err := s.Info(ctx)
	require.NoError(f.t, err)
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(f.t, err)
		msgs = append(msgs, m)
	}
	return msgs
}

// metric returns the value of a counter or a histogram's count with these labels.
func (f *fixture) metric(name string, labels ...string) float64 {
	f.t.Helper()
	return promtest.Value(f.t, f.reg, name, labels...)
}

const exampleBody = `{"aiAgentAddress":"agent-sales@example.com","payload":{"command":"processData","value":42},"senderMetadata":{"serviceName":"CRM_System","correlationId":"crm-corr-123"}}`

func TestAcceptStoresTheEnvelope(t *testing.T) {
	t.Parallel()
	f := setup(t)
	// Exact digits and every code point must survive: the payload travels as bytes.
	payload := `{"big":12345678901234567890123,"dec":0.1000000000000000055511151231257827,"nul":"a\u0000b","nested":{"list":[1,2.50,"x"],"e":1e400},"uni":"héllo 🌍"}`
	address := "agents/ventes+été%2F:x@example.com"
	body := `{"aiAgentAddress":"` + address + `","payload":` + payload + `,"senderMetadata":{"serviceName":"CRM_System","correlationId":"c-1"},"unknown":true}`

	id := accepted(t, f.post(body))
	u := uuid.MustParse(id)
	require.Equal(t, uuid.Version(7), u.Version(), "no senderProvidedMessageId: a fresh UUIDv7")

	msgs := f.stored()
	require.Len(t, msgs, 1)
	m := msgs[0]
	require.Equal(t, stream.Subject, m.Subject)
	require.Equal(t, id, m.Header.Get(jetstream.MsgIDHeader))
	env, err := message.Parse(m.Data)
	require.NoError(t, err)
	require.Equal(t, address, env.AIAgentAddress)
	require.Equal(t, payload, string(env.Payload), "payload bytes unchanged")
	require.Equal(t, "CRM_System", env.ServiceName())
	require.Equal(t, "c-1", env.CorrelationID())

	require.Eventually(t, func() bool { return strings.Contains(f.logs.String(), `"message_id":"`+id+`"`) },
		5*time.Second, 10*time.Millisecond, "a debug line per accepted message")
	require.Equal(t, 1.0, f.metric("msgrouter_ingest_requests_total", "route", "POST /v1/messages", "code", "202", "outcome", "accepted"))
	require.Equal(t, 1.0, f.metric("msgrouter_ingest_publish_duration_seconds"))
	require.Equal(t, 1.0, f.metric("msgrouter_ingest_request_duration_seconds", "route", "POST /v1/messages"))
}

func TestInvalidRequests(t *testing.T) {
	t.Parallel()
	f := setup(t)
	long := strings.Repeat("a", 257)
	for _, tc := range []struct{ name, body string }{
		{"malformed JSON", `{"aiAgentAddress":"a","payload":{}`},
		{"not JSON", `hello`},
		{"empty body", ``},
		{"body is an array", `[{"aiAgentAddress":"a","payload":{}}]`},
		{"body is null", `null`},
		{"missing address", `{"payload":{}}`},
		{"empty address", `{"aiAgentAddress":"","payload":{}}`},
		{"null address", `{"aiAgentAddress":null,"payload":{}}`},
		{"address too long", `{"aiAgentAddress":"` + long + `","payload":{}}`},
		{"address with a space", `{"aiAgentAddress":"agent sales","payload":{}}`},
		{"address with a tab", `{"aiAgentAddress":"agent\tsales","payload":{}}`},
		{"address with NBSP", `{"aiAgentAddress":"agent\u00a0sales","payload":{}}`},
		{"address with a control character", `{"aiAgentAddress":"agent\u0007","payload":{}}`},
		{"address with NUL", `{"aiAgentAddress":"agent\u0000","payload":{}}`},
		{"address is a number", `{"aiAgentAddress":42,"payload":{}}`},
		{"payload missing", `{"aiAgentAddress":"a"}`},
		{"payload null", `{"aiAgentAddress":"a","payload":null}`},
		{"payload array", `{"aiAgentAddress":"a","payload":[1,2]}`},
		{"payload string", `{"aiAgentAddress":"a","payload":"{}"}`},
		{"payload number", `{"aiAgentAddress":"a","payload":42}`},
		{"payload true", `{"aiAgentAddress":"a","payload":true}`},
		{"senderMetadata is a string", `{"aiAgentAddress":"a","payload":{},"senderMetadata":"crm"}`},
		{"senderMetadata is an array", `{"aiAgentAddress":"a","payload":{},"senderMetadata":[]}`},
		{"serviceName is a number", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":1}}`},
		{"correlationId is an object", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"correlationId":{}}}`},
		{"senderProvidedMessageId is a bool", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"senderProvidedMessageId":true}}`},
		{"serviceName too long", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":"` + long + `"}}`},
		{"correlationId too long", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"correlationId":"` + long + `"}}`},
		{"senderProvidedMessageId too long", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"senderProvidedMessageId":"` + long + `"}}`},
		{"not UTF-8", "{\"aiAgentAddress\":\"a\xff\",\"payload\":{}}"},
		{"not UTF-8 in the payload", "{\"aiAgentAddress\":\"a\",\"payload\":{\"k\":\"\xc3\x28\"}}"},
		{"trailing garbage", `{"aiAgentAddress":"a","payload":{}} x`},
		// DESIGN §2: nothing Postgres cannot store gets in (issue 8, item 1).
		{"NUL in correlationId", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"correlationId":"a\u0000b"}}`},
		{"NUL in serviceName", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":"crm\u0000"}}`},
		{"NUL in senderProvidedMessageId", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"senderProvidedMessageId":"\u0000"}}`},
		{"NUL in orderingKey", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"orderingKey":"k\u0000"}}`},
		{"not UTF-8 in metadata", "{\"aiAgentAddress\":\"a\",\"payload\":{},\"senderMetadata\":{\"correlationId\":\"\xe6\x97\"}}"},
		{"expiresAt malformed", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"expiresAt":"tomorrow"}}`},
		{"expiresAt without offset", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"expiresAt":"2099-01-01T00:00:00"}}`},
		{"expiresAt already past", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"expiresAt":"2020-01-01T00:00:00Z"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			refused(t, f.post(tc.body), http.StatusBadRequest, "INVALID_REQUEST")
		})
	}
	t.Cleanup(func() {
		require.Empty(t, f.stored(), "nothing invalid is published")
		require.Equal(t, 40.0, f.metric("msgrouter_ingest_rejected_total", "reason", "invalid"))
	})
}

func TestValidEdgeCases(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range []struct{ name, body string }{
		{"empty payload object", `{"aiAgentAddress":"a","payload":{}}`},
		{"address of 256 bytes", `{"aiAgentAddress":"` + strings.Repeat("é", 128) + `","payload":{}}`},
		{"null senderMetadata", `{"aiAgentAddress":"a","payload":{},"senderMetadata":null}`},
		{"null fields", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":null,"correlationId":null}}`},
		{"unknown senderMetadata fields", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"x":[1]}}`},
		{"metadata of 256 bytes", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"correlationId":"` + strings.Repeat("c", 256) + `"}}`},
		{"whitespace around", " \n{\"aiAgentAddress\":\"a\",\"payload\":{ }}\n "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			accepted(t, f.post(tc.body))
		})
	}
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	const max = 512
	f := setup(t, func(c *ingest.Config) { c.MaxMessageBytes = max })
	bodyOf := func(n int) string {
		b := `{"aiAgentAddress":"a","payload":{"p":"`
		return b + strings.Repeat("x", n-len(b)-3) + `"}}`
	}
	require.Len(t, bodyOf(max), max)
	accepted(t, f.post(bodyOf(max)))

	// Declared too large: refused before reading.
	refused(t, f.post(bodyOf(max+1)), http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")

	// Length not declared (chunked): refused while reading.
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/messages", io.MultiReader(strings.NewReader(bodyOf(max+100))))
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	refused(t, rec, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")

	require.Len(t, f.stored(), 1)
	require.Equal(t, 2.0, f.metric("msgrouter_ingest_rejected_total", "reason", "too_large"))
}

func TestContentTypes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, ct := range []string{
		"application/json", "application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8;foo=bar",
		"application/vnd.api+json", "application/merge-patch+json; v=1", "application/cloudevents+json",
	} {
		t.Run("accepts "+ct, func(t *testing.T) {
			t.Parallel()
			accepted(t, f.post(exampleBody, "Content-Type", ct))
		})
	}
	t.Run("accepts a missing Content-Type", func(t *testing.T) {
		t.Parallel()
		rec := f.do(request{body: exampleBody, header: map[string]string{"Content-Type": ""}})
		accepted(t, rec)
	})
	for _, ct := range []string{
		"text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
		"text/json", "application/+json", "application/jsonx", "json", "application/x+json/y",
	} {
		t.Run("refuses "+ct, func(t *testing.T) {
			t.Parallel()
			refused(t, f.post(exampleBody, "Content-Type", ct), http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE")
		})
	}
}

func TestIdempotentSubmissions(t *testing.T) {
	t.Parallel()
	f := setup(t)
	withSPID := func(service, spid string) string {
		return `{"aiAgentAddress":"a","payload":{"n":1},"senderMetadata":{"serviceName":"` + service + `","senderProvidedMessageId":"` + spid + `"}}`
	}
	first := accepted(t, f.post(withSPID("crm", "m-1")))
	require.Equal(t, message.SenderID("crm", "m-1").String(), first)
	require.Equal(t, uuid.Version(5), uuid.MustParse(first).Version())
	again := accepted(t, f.post(withSPID("crm", "m-1")))
	require.Equal(t, first, again, "a retry gets the same messageId")
	require.Len(t, f.stored(), 1, "and is stored once (Nats-Msg-Id dedupe)")

	other := accepted(t, f.post(withSPID("billing", "m-1")))
	require.NotEqual(t, first, other, "the same id from another service is another message")
	require.Len(t, f.stored(), 2)

	// Without senderProvidedMessageId every submission is new.
	a, b := accepted(t, f.post(exampleBody)), accepted(t, f.post(exampleBody))
	require.NotEqual(t, a, b)
	require.Len(t, f.stored(), 4)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	keys, err := auth.Parse("crm:crm-secret, bare-secret")
	require.NoError(t, err)
	f := setup(t, func(c *ingest.Config) { c.Keys = keys })
	bearer := func(k string) string { return "Bearer " + k }

	refused(t, f.post(exampleBody), http.StatusUnauthorized, "UNAUTHORIZED")
	refused(t, f.post(exampleBody, "Authorization", bearer("wrong")), http.StatusUnauthorized, "UNAUTHORIZED")
	refused(t, f.post(exampleBody, "Authorization", "Basic Y3JtOmNybS1zZWNyZXQ="), http.StatusUnauthorized, "UNAUTHORIZED")
	require.Equal(t, 3.0, f.metric("msgrouter_ingest_rejected_total", "reason", "unauthorized"))

	// A bare key sends as whatever serviceName the body says.
	accepted(t, f.post(exampleBody, "Authorization", bearer("bare-secret")))

	// A named key may repeat its own name...
	accepted(t, f.post(`{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":"crm"}}`, "Authorization", bearer("crm-secret")))
	// ...but not pose as another service.
	refused(t, f.post(exampleBody, "Authorization", bearer("crm-secret")), http.StatusForbidden, "FORBIDDEN")
	require.Equal(t, 1.0, f.metric("msgrouter_ingest_rejected_total", "reason", "forbidden"))

	// An absent serviceName becomes the key's name, before the id is derived.
	for _, body := range []string{
		`{"aiAgentAddress":"a","payload":{},"senderMetadata":{"senderProvidedMessageId":"x-1"}}`,
		`{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":null,"senderProvidedMessageId":"x-1"}}`,
	} {
		id := accepted(t, f.post(body, "Authorization", bearer("crm-secret")))
		require.Equal(t, message.SenderID("crm", "x-1").String(), id)
	}
	id := accepted(t, f.post(`{"aiAgentAddress":"a","payload":{}}`, "Authorization", bearer("crm-secret")))
	var env *message.Envelope
	for _, m := range f.stored() {
		if m.Header.Get(jetstream.MsgIDHeader) == id {
			env, err = message.Parse(m.Data)
			require.NoError(t, err)
		}
	}
	require.NotNil(t, env)
	require.Equal(t, "crm", env.ServiceName(), "no senderMetadata at all: it is added")

	// Health, metrics and the document stay open.
	for _, p := range []string{"/health", "/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs"} {
		require.Equal(t, http.StatusOK, f.do(request{method: http.MethodGet, path: p}).Code, p)
	}
}

func TestRateLimitPerKey(t *testing.T) {
	t.Parallel()
	keys, err := auth.Parse("crm:k1,billing:k2,k3,k4")
	require.NoError(t, err)
	c := fakeclock.New(time.Unix(1_800_000_000, 0))
	f := setup(t, func(cfg *ingest.Config) {
		cfg.Keys = keys
		cfg.Limiter = ratelimit.New(0.5, 2, 100, ratelimit.WithClock(c.Now)) // one every 2s, burst 2
	})
	send := func(key string) *httptest.ResponseRecorder {
		return f.post(`{"aiAgentAddress":"a","payload":{}}`, "Authorization", "Bearer "+key)
	}
	accepted(t, send("k1"))
	accepted(t, send("k1"))
	rec := send("k1")
	refused(t, rec, http.StatusTooManyRequests, "RATE_LIMITED")
	require.Equal(t, "2", rec.Header().Get("Retry-After"), "whole seconds from the limiter's delay")

	// Other keys, named or bare, have their own buckets.
	accepted(t, send("k2"))
	accepted(t, send("k3"))
	accepted(t, send("k3"))
	refused(t, send("k3"), http.StatusTooManyRequests, "RATE_LIMITED")
	accepted(t, send("k4"))

	c.Advance(1500 * time.Millisecond)
	rec = send("k1")
	refused(t, rec, http.StatusTooManyRequests, "RATE_LIMITED")
	require.Equal(t, "1", rec.Header().Get("Retry-After"), "at least 1 even for 500ms")
	c.Advance(500 * time.Millisecond)
	accepted(t, send("k1"))

	require.Equal(t, 3.0, f.metric("msgrouter_ingest_rejected_total", "reason", "rate_limited"))
	require.Len(t, f.stored(), 7, "refused submissions were not published")
}

func TestRateLimitPerClientIP(t *testing.T) {
	t.Parallel()
	// Real time, a high rate: recovery is quick, and waited for, not slept on.
	f := setup(t, func(c *ingest.Config) { c.RateLimit, c.RateBurst = 20, 1 })
	from := func(addr string, xff string) *httptest.ResponseRecorder {
		return f.do(request{body: exampleBody, remoteAddr: addr, header: map[string]string{"X-Forwarded-For": xff}})
	}
	accepted(t, from("192.0.2.10:40000", ""))
	rec := from("192.0.2.10:40001", "198.51.100.7")
	refused(t, rec, http.StatusTooManyRequests, "RATE_LIMITED")
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	accepted(t, from("[2001:db8::1]:40000", ""))

	require.Eventually(t, func() bool {
		return from("192.0.2.10:40002", "").Code == http.StatusAccepted
	}, 5*time.Second, 10*time.Millisecond, "the sender recovers at the configured rate")
}

func TestUnavailableWhenJetStreamIsDown(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *ingest.Config) { c.PublishTimeout = 500 * time.Millisecond })
	f.srv.Shutdown()
	f.srv.WaitForShutdown()

	rec := f.post(exampleBody)
	refused(t, rec, http.StatusServiceUnavailable, "UNAVAILABLE")
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Contains(t, f.logs.String(), `"level":"WARN","msg":"error publishing message","message_id":`)
	require.Equal(t, 1.0, f.metric("msgrouter_ingest_rejected_total", "reason", "unavailable"))

	rec = f.do(request{method: http.MethodGet, path: "/health/ready"})
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Contains(t, rec.Body.String(), `"failing":"jetstream"`)

	f.srv.Restart(t)
	require.Eventually(t, f.nc.IsConnected, 10*time.Second, 10*time.Millisecond)
	require.Empty(t, f.stored(), "the refused message was not stored after all")
	require.Eventually(t, func() bool { return f.post(exampleBody).Code == http.StatusAccepted },
		10*time.Second, 20*time.Millisecond, "submissions flow again once JetStream is back")
}

func TestDrain(t *testing.T) {
	t.Parallel()
	f := setup(t)
	require.Equal(t, http.StatusOK, f.do(request{method: http.MethodGet, path: "/health/ready"}).Code)
	f.h.Drain()
	rec := f.post(exampleBody)
	refused(t, rec, http.StatusServiceUnavailable, "UNAVAILABLE")
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Empty(t, f.stored())

	rec = f.do(request{method: http.MethodGet, path: "/health/ready"})
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Contains(t, rec.Body.String(), `"failing":"ingest"`)
	require.Equal(t, http.StatusOK, f.do(request{method: http.MethodGet, path: "/health/live"}).Code, "still alive")
}

func TestHealthAndErrorsOfUnknownRoutes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, p := range []string{"/health", "/health/live"} {
		rec := f.do(request{method: http.MethodGet, path: p})
		require.Equal(t, http.StatusOK, rec.Code)
		require.JSONEq(t, `{"status":"ok","version":"test"}`, rec.Body.String())
	}
	rec := f.do(request{method: http.MethodGet, path: "/health/ready"})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `"jetstream":"ok"`)

	refused(t, f.do(request{method: http.MethodGet, path: "/nope"}), http.StatusNotFound, "NOT_FOUND")
	rec = f.do(request{method: http.MethodGet, path: "/v1/messages"})
	refused(t, rec, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
	require.Contains(t, rec.Header().Get("Allow"), "POST")
	refused(t, f.do(request{method: http.MethodDelete, path: "/metrics"}), http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
	require.Equal(t, 1.0, f.metric("msgrouter_ingest_requests_total", "route", "unmatched", "code", "404", "outcome", "rejected"))

	rec = f.do(request{method: http.MethodGet, path: "/metrics"})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "msgrouter_ingest_requests_total")
	require.Contains(t, rec.Body.String(), `msgrouter_ingest_rejected_total{reason="unavailable"} 0`, "reasons exported from the start")

	rec = f.do(request{method: http.MethodGet, path: "/docs"})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Header().Get("Content-Type"), "text/html")
	require.NotContains(t, rec.Body.String(), "https://", "self-contained: no CDN")
}

// TestOpenAPICoversRoutes fails when a route is served but not documented.
// TestOpenAPIDocumentMatchesResponses validates the document itself.
func TestOpenAPICoversRoutes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rec := f.do(request{method: http.MethodGet, path: "/openapi.json"})
	require.Equal(t, http.StatusOK, rec.Code)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &doc))
	require.Regexp(t, `^3\.[01]\.\d+$`, doc["openapi"])
	paths := doc["paths"].(map[string]any)

	patterns := f.h.Patterns()
	require.Contains(t, patterns, "POST /v1/messages")
	for _, p := range patterns {
		method, path, ok := strings.Cut(p, " ")
		require.True(t, ok, "pattern %q has a method", p)
		item, ok := paths[path].(map[string]any)
		require.True(t, ok, "%s is not in openapi.json", path)
		op, ok := item[strings.ToLower(method)].(map[string]any)
		require.True(t, ok, "%s is not in openapi.json", p)
		require.NotEmpty(t, op["responses"], p)
	}

	// The message route documents every answer of the contract, with the error body.
	post := paths["/v1/messages"].(map[string]any)["post"].(map[string]any)
	for _, code := range []string{"202", "400", "401", "403", "413", "415", "429", "503"} {
		require.Contains(t, post["responses"], code)
	}
}

func TestConcurrentSubmissionsPipeline(t *testing.T) {
	t.Parallel()
	f := setup(t)
	const n = 200
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			rec := f.post(exampleBody)
			if rec.Code == http.StatusAccepted {
				var b map[string]string
				_ = json.Unmarshal(rec.Body.Bytes(), &b)
				ids <- b["messageId"]
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	require.Len(t, seen, n)
	require.Len(t, f.stored(), n)
}

func BenchmarkPost(b *testing.B) {
	f := setup(b, func(c *ingest.Config) { c.Logger = slog.New(slog.DiscardHandler) })
	body := []byte(exampleBody)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	// 32 request goroutines per CPU, as a loaded server has: sync publishes pipeline
	// over the one connection instead of waiting for each other.
	b.SetParallelism(32)
	f.postParallel(b, "/v1/messages", body, func(rec *httptest.ResponseRecorder) bool {
		return rec.Code == http.StatusAccepted
	})
}

// postParallel posts body to path from b's parallel goroutines, b.N times in
// all, and fails b on the first answer that is not ok.
func (f *fixture) postParallel(b *testing.B, path string, body []byte, ok func(*httptest.ResponseRecorder) bool) {
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			if !ok(rec) {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	})
}

// A negative PubAck is never a 202 (issue 11: the publish is asynchronous, its ack
// awaited): the stream refuses the message (full, DiscardNew) and the client gets a
// 503 to retry, and the message is not in the stream.
func TestNegativePubAckIsUnavailable(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s, err := f.js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs, cfg.Discard = 1, jetstream.DiscardNew
	_, err = f.js.UpdateStream(t.Context(), cfg)
	require.NoError(t, err)

	require.Equal(t, http.StatusAccepted, f.post(exampleBody).Code)
	rec := f.post(strings.Replace(exampleBody, "crm-corr-123", "crm-corr-124", 1))
	refused(t, rec, http.StatusServiceUnavailable, "UNAVAILABLE")
	require.Contains(t, f.logs.String(), "maximum messages exceeded")
	require.Len(t, f.stored(), 1)
}
