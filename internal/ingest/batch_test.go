package ingest_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/ingest"
	"github.com/msgrouter/msgrouter/internal/message"
	"github.com/msgrouter/msgrouter/internal/ratelimit"
	"github.com/msgrouter/msgrouter/internal/testutil/fakeclock"
)

func (f *fixture) postBatch(body string, header ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	h := map[string]string{}
	for i := 0; i+1 < len(header); i += 2 {
		h[header[i]] = header[i+1]
	}
	return f.do(request{path: "/v1/messages/batch", body: body, header: h})
}

// batchResults checks a 200 batch answer and returns its results.
func batchResults(t testing.TB, rec *httptest.ResponseRecorder) []ingest.BatchResult {
	t.Helper()
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var got struct {
		Results []ingest.BatchResult `json:"results"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	return got.Results
}

func batchOf(items ...string) string {
	return `{"messages":[` + strings.Join(items, ",") + `]}`
}

// storedByID returns the stream's messages by their Nats-Msg-Id.
func (f *fixture) storedByID() map[string]*message.Envelope {
	f.t.Helper()
	out := map[string]*message.Envelope{}
	for _, m := range f.stored() {
		env, err := message.Parse(m.Data)
		require.NoError(f.t, err)
		out[m.Header.Get(jetstream.MsgIDHeader)] = env
	}
	return out
}

// Each item is judged as the single route would judge it, answered in request
// order; one bad item never fails the others (DESIGN §2).
func TestBatchItemsAreIndependent(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *ingest.Config) { c.MaxMessageBytes = 200 })
	payload := `{"n":12345678901234567890123,"s":"a\u0000b"}`
	items := []string{
		`{"aiAgentAddress":"a-0","payload":` + payload + `}`,
		`{"aiAgentAddress":"a b","payload":{}}`, // whitespace in the address
		`{"aiAgentAddress":"a-2","payload":{},"senderMetadata":{"serviceName":"crm","senderProvidedMessageId":"x-1"}}`,
		`{"aiAgentAddress":"a-3","payload":{},"senderMetadata":{"correlationId":"a\u0000b"}}`, // not storable
		`{"aiAgentAddress":"a-4","payload":{"big":"` + strings.Repeat("x", 300) + `"}}`,       // over MAX_MESSAGE_BYTES
		`{"aiAgentAddress":"a-5","payload":{},"senderMetadata":{"expiresAt":"2020-01-01T00:00:00Z"}}`,
		`null`,
		`{"aiAgentAddress":"a-7","payload":[]}`,
		`{"aiAgentAddress":"a-8","payload":{}}`,
	}
	res := batchResults(t, f.postBatch(batchOf(items...)))
	require.Len(t, res, len(items))
	want := []string{"", "INVALID_REQUEST", "", "INVALID_REQUEST", "PAYLOAD_TOO_LARGE", "INVALID_REQUEST", "INVALID_REQUEST", "INVALID_REQUEST", ""}
	for i, r := range res {
		require.Equal(t, want[i], r.ErrorCode, "item %d: %+v", i, r)
		if want[i] == "" {
			require.NotEmpty(t, r.MessageID, "item %d", i)
			require.Empty(t, r.Message)
		} else {
			require.Empty(t, r.MessageID, "item %d", i)
			require.NotEmpty(t, r.Message, "item %d", i)
		}
	}
	require.Contains(t, res[3].Message, "U+0000")
	require.Contains(t, res[5].Message, "already past")
	require.Equal(t, message.SenderID("crm", "x-1").String(), res[2].MessageID, "the same id derivation as the single route")

	stored := f.storedByID()
	require.Len(t, stored, 3, "only the valid items are published")
	require.Equal(t, "a-0", stored[res[0].MessageID].AIAgentAddress)
	require.Equal(t, payload, string(stored[res[0].MessageID].Payload), "payload bytes unchanged")
	require.Equal(t, "a-2", stored[res[2].MessageID].AIAgentAddress)
	require.Equal(t, "a-8", stored[res[8].MessageID].AIAgentAddress)

	require.Equal(t, 3.0, f.metric("msgrouter_ingest_accepted_total", "sender", "anonymous"))
	require.Equal(t, 5.0, f.metric("msgrouter_ingest_rejected_total", "reason", "invalid"))
	require.Equal(t, 1.0, f.metric("msgrouter_ingest_rejected_total", "reason", "too_large"))
	require.Equal(t, 1.0, f.metric("msgrouter_ingest_requests_total", "route", "POST /v1/messages/batch", "code", "200"))

	// A retried batch gets the same ids for items with a senderProvidedMessageId.
	again := batchResults(t, f.postBatch(batchOf(items[2])))
	require.Equal(t, res[2].MessageID, again[0].MessageID)
}

// The request as a whole is refused only for its shape, size, type, auth or rate.
func TestBatchShape(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *ingest.Config) { c.MaxBatchBytes = 64 << 10 })
	one := `{"aiAgentAddress":"a","payload":{}}`
	many := func(n int) string {
		items := make([]string, n)
		for i := range items {
			items[i] = `{}`
		}
		return batchOf(items...)
	}
	for _, tc := range []struct{ name, body string }{
		{"malformed JSON", `{"messages":[`},
		{"not JSON", `hello`},
		{"empty body", ``},
		{"body is an array", `[` + one + `]`},
		{"body is null", `null`},
		{"messages missing", `{}`},
		{"messages null", `{"messages":null}`},
		{"messages is an object", `{"messages":` + one + `}`},
		{"messages is a string", `{"messages":"x"}`},
		{"no items", `{"messages":[]}`},
		{"1001 items", many(1001)},
		{"not UTF-8 outside the items", "{\"messages\":[" + one + "],\"x\":\"\xff\"}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			refused(t, f.postBatch(tc.body), http.StatusBadRequest, "INVALID_REQUEST")
		})
	}
	t.Run("1000 items", func(t *testing.T) {
		t.Parallel()
		res := batchResults(t, f.postBatch(many(1000)))
		require.Len(t, res, 1000)
		for _, r := range res {
			require.Equal(t, "INVALID_REQUEST", r.ErrorCode)
		}
	})
	t.Run("over MAX_BATCH_BYTES", func(t *testing.T) {
		t.Parallel()
		big := batchOf(`{"aiAgentAddress":"a","payload":{"x":"` + strings.Repeat("y", 65<<10) + `"}}`)
		b := refused(t, f.postBatch(big), http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
		require.Contains(t, b.Message, "MAX_BATCH_BYTES")
		// Without a Content-Length the limit holds as the body is read.
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/messages/batch", strings.NewReader(big))
		req.ContentLength = -1
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		refused(t, rec, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	})
	t.Run("content type", func(t *testing.T) {
		t.Parallel()
		rec := f.do(request{path: "/v1/messages/batch", body: batchOf(one), header: map[string]string{"Content-Type": "text/plain"}})
		refused(t, rec, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE")
	})
	t.Run("wrong method", func(t *testing.T) {
		t.Parallel()
		refused(t, f.do(request{method: http.MethodGet, path: "/v1/messages/batch"}), http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
	})
	t.Cleanup(func() { require.Empty(t, f.stored(), "nothing was published") })
}

// A batch needs the same key as one message; a named key's items may not pose as
// another service, item by item.
func TestBatchAuth(t *testing.T) {
	t.Parallel()
	keys, err := auth.Parse("crm:crm-secret")
	require.NoError(t, err)
	f := setup(t, func(c *ingest.Config) { c.Keys = keys })
	body := batchOf(
		`{"aiAgentAddress":"a","payload":{},"senderMetadata":{"senderProvidedMessageId":"x-1"}}`,
		`{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":"billing"}}`,
	)
	refused(t, f.postBatch(body), http.StatusUnauthorized, "UNAUTHORIZED")
	refused(t, f.postBatch(body, "Authorization", "Bearer wrong"), http.StatusUnauthorized, "UNAUTHORIZED")
	res := batchResults(t, f.postBatch(body, "Authorization", "Bearer crm-secret"))
	require.Equal(t, message.SenderID("crm", "x-1").String(), res[0].MessageID, "an absent serviceName is the key's name")
	require.Equal(t, "FORBIDDEN", res[1].ErrorCode)
	require.Len(t, f.stored(), 1)
	require.Equal(t, 1.0, f.metric("msgrouter_ingest_accepted_total", "sender", "crm"))
}

// A batch of n counts n against the sender's rate; a refused batch costs nothing.
func TestBatchRateLimit(t *testing.T) {
	t.Parallel()
	c := fakeclock.New(time.Unix(1_800_000_000, 0))
	f := setup(t, func(cfg *ingest.Config) {
		cfg.Limiter = ratelimit.New(10, 20, 100, ratelimit.WithClock(c.Now)) // 10/s, burst 20
	})
	items := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf(`{"aiAgentAddress":"a-%d","payload":{}}`, i)
		}
		return batchOf(s...)
	}
	require.Len(t, batchResults(t, f.postBatch(items(15))), 15)
	rec := f.postBatch(items(10))
	refused(t, rec, http.StatusTooManyRequests, "RATE_LIMITED")
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Len(t, batchResults(t, f.postBatch(items(5))), 5, "the refused batch took nothing")
	refused(t, f.post(exampleBody), http.StatusTooManyRequests, "RATE_LIMITED")
	c.Advance(100 * time.Millisecond)
	accepted(t, f.post(exampleBody))
	require.Len(t, f.stored(), 21)
}

// JetStream down: every item answers UNAVAILABLE in a 200, nothing is stored.
func TestBatchUnavailable(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *ingest.Config) { c.PublishTimeout = 300 * time.Millisecond })
	f.srv.Shutdown()
	f.srv.WaitForShutdown()
	res := batchResults(t, f.postBatch(batchOf(exampleBody, `{"aiAgentAddress":"a b","payload":{}}`, exampleBody)))
	require.Equal(t, []string{"UNAVAILABLE", "INVALID_REQUEST", "UNAVAILABLE"}, []string{res[0].ErrorCode, res[1].ErrorCode, res[2].ErrorCode})
	require.Equal(t, 2.0, f.metric("msgrouter_ingest_rejected_total", "reason", "unavailable"))
	f.srv.Restart(t)
	require.Eventually(t, f.nc.IsConnected, 10*time.Second, 10*time.Millisecond)
	require.Empty(t, f.stored())

	f.h.Drain()
	rec := f.postBatch(batchOf(exampleBody))
	refused(t, rec, http.StatusServiceUnavailable, "UNAVAILABLE")
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
}

// BenchmarkBatch submits batches of 100 messages from a few concurrent clients;
// msgs/s is the figure to compare with BenchmarkPost (issue 11, item 3).
func BenchmarkBatch(b *testing.B) {
	f := setup(b, func(c *ingest.Config) { c.Logger = slog.New(slog.DiscardHandler) })
	items := make([]string, 100)
	for i := range items {
		items[i] = exampleBody
	}
	body := []byte(batchOf(items...))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.SetParallelism(4)
	start := time.Now()
	f.postParallel(b, "/v1/messages/batch", body, func(rec *httptest.ResponseRecorder) bool {
		return rec.Code == http.StatusOK && !strings.Contains(rec.Body.String(), "errorCode")
	})
	b.ReportMetric(float64(b.N*len(items))/time.Since(start).Seconds(), "msgs/s")
}
