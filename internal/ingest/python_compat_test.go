package ingest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/ingest"
	"github.com/msgrouter/msgrouter/internal/message"
)

// The Python Message Router Service's documented request and its error cases,
// posted as its producers post them (MIGRATING.md, issue 14): the same path, body,
// status codes and errorCodes. The one documented change: 202 {"messageId"} once
// JetStream stored the message, instead of the synchronous publish's answer.
func TestPythonServiceDocumentedCases(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *ingest.Config) { c.MaxMessageBytes = 4096 })

	// DESIGN §2's example, the Python README's request.
	const example = `{
  "aiAgentAddress": "agent-sales@example.com",
  "payload": {"command": "processData", "value": 42},
  "senderMetadata": {
    "serviceName": "CRM_System",
    "correlationId": "crm-corr-123",
    "senderProvidedMessageId": "crm-msg-abc"
  }
}`
	id := accepted(t, f.post(example))
	require.Equal(t, message.SenderID("CRM_System", "crm-msg-abc").String(), id,
		"a senderProvidedMessageId gives a stable messageId (UUIDv5 of serviceName and it)")
	require.Equal(t, id, accepted(t, f.post(example)), "a retried submission gets the same messageId")
	msgs := f.stored()
	require.NotEmpty(t, msgs)
	require.Contains(t, string(msgs[0].Data), `"payload":{"command": "processData", "value": 42}`, "the payload's bytes are kept")

	cases := []struct {
		name        string
		body        string
		contentType string
		status      int
		code        string
	}{
		{"missing aiAgentAddress", `{"payload": {"command": "processData"}}`, "application/json", http.StatusBadRequest, "INVALID_REQUEST"},
		{"empty aiAgentAddress", `{"aiAgentAddress": "", "payload": {}}`, "application/json", http.StatusBadRequest, "INVALID_REQUEST"},
		{"missing payload", `{"aiAgentAddress": "agent-sales@example.com"}`, "application/json", http.StatusBadRequest, "INVALID_REQUEST"},
		{"payload a string", `{"aiAgentAddress": "agent-sales@example.com", "payload": "processData"}`, "application/json", http.StatusBadRequest, "INVALID_REQUEST"},
		{"payload an array", `{"aiAgentAddress": "agent-sales@example.com", "payload": [1, 2]}`, "application/json", http.StatusBadRequest, "INVALID_REQUEST"},
		{"payload null", `{"aiAgentAddress": "agent-sales@example.com", "payload": null}`, "application/json", http.StatusBadRequest, "INVALID_REQUEST"},
		{"malformed JSON", `{"aiAgentAddress": "agent-sales@example.com", "payload": {`, "application/json", http.StatusBadRequest, "INVALID_REQUEST"},
		{"wrong content type", example, "text/plain", http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"},
		{"form content type", "aiAgentAddress=a", "application/x-www-form-urlencoded", http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"},
		{"oversize", `{"aiAgentAddress": "agent-sales@example.com", "payload": {"blob": "` + strings.Repeat("x", 5000) + `"}}`, "application/json", http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE"},
	}
	for _, c := range cases {
		rec := f.post(c.body, "Content-Type", c.contentType)
		refused(t, rec, c.status, c.code)
	}
	require.Len(t, f.stored(), len(msgs), "nothing refused reached the stream")

	// The same health routes as the Python service.
	for _, path := range []string{"/health", "/health/live", "/health/ready"} {
		rec := f.do(request{method: http.MethodGet, path: path})
		require.Equal(t, http.StatusOK, rec.Code, path)
		require.Contains(t, rec.Body.String(), `"status"`, path)
	}
}
