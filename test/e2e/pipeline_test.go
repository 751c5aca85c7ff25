package e2e_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/apiclient"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

const timestampRE = `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`

// TestPipeline follows messages from POST /v1/messages to a NATS inbox and to an HTTP
// inbox, through the real CAMS and router, and checks what the agents receive
// (payload and the DESIGN §5 attributes) and what the admin API shows.
func TestPipeline(t *testing.T) {
	t.Parallel()
	s := start(t, sysOptions{})
	// Characters DESIGN §2 says must survive every hop.
	natsAgent := "agent-sales.eu/ü+1@example.com"
	httpAgent := "agent-støtte/2+x@example.com"
	s.register("", natsAgent, mapping.TypeNATSSubject, "inbox.sales")
	s.register("", httpAgent, mapping.TypeHTTPEndpoint, s.hooks.URL+"/hook")

	// The payload keeps its exact bytes: big integers, long decimals, escapes.
	const payload = `{"command":"processData","value":12345678901234567890123,"pi":3.14159265358979323846264338327950288,"s":"a\u0000b"}`
	msg := func(agent, spid string) map[string]any {
		return map[string]any{
			"aiAgentAddress": agent,
			"payload":        json.RawMessage(payload),
			"senderMetadata": map[string]any{"serviceName": "CRM_System", "correlationId": "corr-" + spid, "senderProvidedMessageId": spid},
		}
	}

	t.Run("NATS inbox", func(t *testing.T) {
		id := s.send("", msg(natsAgent, "crm-msg-nats"))
		v := s.waitFinal("", id)
		require.Equal(t, "DELIVERED", v.Status, "lastError %q", v.LastError)
		require.Equal(t, natsAgent, v.AIAgentAddress)
		require.NotNil(t, v.Destination)
		require.Equal(t, mapping.TypeNATSSubject, v.Destination.Type)
		require.Equal(t, "inbox.sales", v.Destination.Name)
		require.Equal(t, 1, v.Attempts)

		got := s.inboxMessages("inbox.sales")
		require.Len(t, got, 1)
		m := got[0]
		require.Equal(t, payload, string(m.Data), "the payload's bytes are kept")
		require.Equal(t, id, natsHeader(m, "messageId"))
		require.Equal(t, id, natsHeader(m, nats.MsgIdHdr))
		require.Equal(t, natsAgent, natsHeader(m, "aiAgentAddress"), "raw UTF-8 in NATS headers")
		require.Regexp(t, timestampRE, natsHeader(m, "timestampPublished"))
		require.Equal(t, "application/json", natsHeader(m, "contentType"))
		require.Equal(t, "CRM_System", natsHeader(m, "senderId"))
		require.Equal(t, "corr-crm-msg-nats", natsHeader(m, "correlationId"))
		require.Equal(t, "crm-msg-nats", natsHeader(m, "senderProvidedMessageId"))
		ts, err := time.Parse(time.RFC3339, natsHeader(m, "timestampPublished"))
		require.NoError(t, err)
		require.WithinDuration(t, time.Now(), ts, time.Minute)
	})

	t.Run("HTTP inbox", func(t *testing.T) {
		id := s.send("", msg(httpAgent, "crm-msg-http"))
		v := s.waitFinal("", id)
		require.Equal(t, "DELIVERED", v.Status, "lastError %q", v.LastError)
		require.Equal(t, mapping.TypeHTTPEndpoint, v.Destination.Type)

		got := received(s.hooks, id)
		require.Len(t, got, 1)
		r := got[0]
		require.Equal(t, "/hook", r.Path)
		require.Equal(t, payload, string(r.Body))
		for _, h := range []string{"X-Message-Id", "Idempotency-Key", "Webhook-Id"} {
			require.Equal(t, id, r.Header.Get(h), h)
		}
		require.Equal(t, escapedAddress(httpAgent), r.Header.Get("X-Ai-Agent-Address"), "HTTP header values are path-escaped")
		require.Regexp(t, timestampRE, r.Header.Get("X-Timestamp-Published"))
		require.Equal(t, "application/json", r.Header.Get("Content-Type"))
		require.Equal(t, "CRM_System", r.Header.Get("X-Sender-Id"))
		require.Equal(t, "corr-crm-msg-http", r.Header.Get("X-Correlation-Id"))
		require.Equal(t, "crm-msg-http", r.Header.Get("X-Sender-Provided-Message-Id"))
		require.Empty(t, r.Header.Get("Webhook-Signature"), "no signing secret configured")
	})

	t.Run("idempotent resubmission is delivered once", func(t *testing.T) {
		first := s.send("", msg(httpAgent, "crm-msg-retry"))
		inFlight := s.send("", msg(httpAgent, "crm-msg-retry")) // before the first is delivered, most likely
		require.Equal(t, first, inFlight, "same serviceName + senderProvidedMessageId, same messageId")
		require.Equal(t, "DELIVERED", s.waitFinal("", first).Status)
		late := s.send("", msg(httpAgent, "crm-msg-retry"))
		require.Equal(t, first, late)

		// Anything the duplicates could cause happens before a later message to the
		// same inboxes is taken over: the stream is consumed in order.
		barrierHTTP := s.send("", msg(httpAgent, "crm-msg-barrier"))
		require.Equal(t, "DELIVERED", s.waitFinal("", barrierHTTP).Status)
		require.Len(t, received(s.hooks, first), 1, "the HTTP inbox got the message once")

		_, _, body := s.request(http.MethodGet, s.urls["router"]+"/v1/messages/"+first, "", nil)
		var v apiclient.Message
		require.NoError(t, json.Unmarshal(body, &v))
		require.Equal(t, "DELIVERED", v.Status)
		require.Equal(t, httpAgent, v.AIAgentAddress, "the first submission wins")
		require.Len(t, v.History, 1, "one delivery attempt in all")
	})
}
