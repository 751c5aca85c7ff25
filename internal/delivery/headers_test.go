package delivery

import (
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

var accepted = time.Date(2026, 11, 28, 16, 4, 5, 123456789, time.FixedZone("CET", 3600))

func fullDelivery() *Delivery {
	return &Delivery{
		MessageID:       "0192f0c4-7d7e-7cc4-8b1e-3f0a3e6f8d21",
		AIAgentAddress:  "agent-sales@example.com",
		DestType:        "HTTP_ENDPOINT",
		DestName:        "https://inbox.example/hook",
		Payload:         []byte(`{"command":"processData","value":42}`),
		AcceptedAt:      accepted,
		SenderID:        "CRM_System",
		CorrelationID:   "crm-corr-123",
		SenderMessageID: "crm-msg-abc",
		Traceparent:     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
}

func TestFormatTimestamp(t *testing.T) {
	t.Parallel()
	require.Equal(t, "2026-11-28T15:04:05.123Z", FormatTimestamp(accepted))
	require.Equal(t, "2026-01-02T03:04:05.000Z", FormatTimestamp(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
}

// headerDeliveries returns a delivery with only the required attributes and one
// whose values a header must carry exactly: non-ASCII, "/", "?", "#", "%", spaces.
func headerDeliveries() (minimal, odd *Delivery) {
	minimal = &Delivery{MessageID: "id-1", AIAgentAddress: "a@b", AcceptedAt: accepted}
	odd = fullDelivery()
	odd.AIAgentAddress = "агент/x?y#z%20+:;,=&é"
	odd.SenderID = "Sérvice/1"
	odd.CorrelationID = "a b"
	return minimal, odd
}

func TestNATSHeader(t *testing.T) {
	t.Parallel()
	minimal, odd := headerDeliveries()

	tests := []struct {
		name string
		d    *Delivery
		want nats.Header
	}{
		{"all attributes", fullDelivery(), nats.Header{
			"messageId":               {"0192f0c4-7d7e-7cc4-8b1e-3f0a3e6f8d21"},
			"Nats-Msg-Id":             {"0192f0c4-7d7e-7cc4-8b1e-3f0a3e6f8d21"},
			"aiAgentAddress":          {"agent-sales@example.com"},
			"timestampPublished":      {"2026-11-28T15:04:05.123Z"},
			"contentType":             {"application/json"},
			"senderId":                {"CRM_System"},
			"correlationId":           {"crm-corr-123"},
			"senderProvidedMessageId": {"crm-msg-abc"},
			"traceparent":             {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		}},
		{"absent attributes omitted", minimal, nats.Header{
			"messageId":          {"id-1"},
			"Nats-Msg-Id":        {"id-1"},
			"aiAgentAddress":     {"a@b"},
			"timestampPublished": {"2026-11-28T15:04:05.123Z"},
			"contentType":        {"application/json"},
		}},
		{"raw UTF-8, nothing escaped", odd, nats.Header{
			"messageId":               {"0192f0c4-7d7e-7cc4-8b1e-3f0a3e6f8d21"},
			"Nats-Msg-Id":             {"0192f0c4-7d7e-7cc4-8b1e-3f0a3e6f8d21"},
			"aiAgentAddress":          {"агент/x?y#z%20+:;,=&é"},
			"timestampPublished":      {"2026-11-28T15:04:05.123Z"},
			"contentType":             {"application/json"},
			"senderId":                {"Sérvice/1"},
			"correlationId":           {"a b"},
			"senderProvidedMessageId": {"crm-msg-abc"},
			"traceparent":             {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, NATSHeader(tt.d))
		})
	}
}

func TestHTTPHeader(t *testing.T) {
	t.Parallel()
	minimal, odd := headerDeliveries()

	tests := []struct {
		name string
		d    *Delivery
		want http.Header
	}{
		{"all attributes", fullDelivery(), http.Header{
			"X-Message-Id":                 {"0192f0c4-7d7e-7cc4-8b1e-3f0a3e6f8d21"},
			"Idempotency-Key":              {"0192f0c4-7d7e-7cc4-8b1e-3f0a3e6f8d21"},
			"Webhook-Id":                   {"0192f0c4-7d7e-7cc4-8b1e-3f0a3e6f8d21"},
			"X-Ai-Agent-Address":           {"agent-sales@example.com"},
			"X-Timestamp-Published":        {"2026-11-28T15:04:05.123Z"},
			"Content-Type":                 {"application/json"},
			"X-Sender-Id":                  {"CRM_System"},
			"X-Correlation-Id":             {"crm-corr-123"},
			"X-Sender-Provided-Message-Id": {"crm-msg-abc"},
			"Traceparent":                  {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		}},
		{"absent attributes omitted, webhook-id always", minimal, http.Header{
			"X-Message-Id":          {"id-1"},
			"Idempotency-Key":       {"id-1"},
			"Webhook-Id":            {"id-1"},
			"X-Ai-Agent-Address":    {"a@b"},
			"X-Timestamp-Published": {"2026-11-28T15:04:05.123Z"},
			"Content-Type":          {"application/json"},
		}},
		{"values path-escaped", odd, http.Header{
			"X-Message-Id":                 {"0192f0c4-7d7e-7cc4-8b1e-3f0a3e6f8d21"},
			"Idempotency-Key":              {"0192f0c4-7d7e-7cc4-8b1e-3f0a3e6f8d21"},
			"Webhook-Id":                   {"0192f0c4-7d7e-7cc4-8b1e-3f0a3e6f8d21"},
			"X-Ai-Agent-Address":           {"%D0%B0%D0%B3%D0%B5%D0%BD%D1%82%2Fx%3Fy%23z%2520+:%3B%2C=&%C3%A9"},
			"X-Timestamp-Published":        {"2026-11-28T15:04:05.123Z"},
			"Content-Type":                 {"application/json"},
			"X-Sender-Id":                  {"S%C3%A9rvice%2F1"},
			"X-Correlation-Id":             {"a%20b"},
			"X-Sender-Provided-Message-Id": {"crm-msg-abc"},
			"Traceparent":                  {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := HTTPHeader(tt.d)
			require.Equal(t, tt.want, got)
			for k := range got {
				require.Equal(t, http.CanonicalHeaderKey(k), k, "keys must be canonical to be found by Get")
			}
		})
	}
}

func BenchmarkNATSHeader(b *testing.B) {
	d := fullDelivery()
	b.ReportAllocs()
	for b.Loop() {
		_ = NATSHeader(d)
	}
}

func BenchmarkHTTPHeader(b *testing.B) {
	d := fullDelivery()
	b.ReportAllocs()
	for b.Loop() {
		_ = HTTPHeader(d)
	}
}

func BenchmarkHTTPHeaderEscaped(b *testing.B) {
	d := fullDelivery()
	d.AIAgentAddress = "агент/sales@пример.рф"
	b.ReportAllocs()
	for b.Loop() {
		_ = HTTPHeader(d)
	}
}
