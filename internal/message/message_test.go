package message_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/message"
	"github.com/msgrouter/msgrouter/internal/pgtext"
)

func TestParseValid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body          string
		address, payload    string
		service, corr, spid string
		hasMetadata         bool
	}{
		{name: "the example", body: `{"aiAgentAddress":"agent-sales@example.com","payload":{"command":"processData","value":42},"senderMetadata":{"serviceName":"CRM_System","correlationId":"crm-corr-123","senderProvidedMessageId":"crm-msg-abc"}}`,
			address: "agent-sales@example.com", payload: `{"command":"processData","value":42}`, service: "CRM_System", corr: "crm-corr-123", spid: "crm-msg-abc", hasMetadata: true},
		{name: "empty payload", body: `{"aiAgentAddress":"a","payload":{}}`, address: "a", payload: `{}`},
		{name: "exact numbers and NUL kept", body: `{"aiAgentAddress":"a","payload":{"n":12345678901234567890123,"d":0.1000000000000000055511151231257827,"s":"\u0000"}}`,
			address: "a", payload: `{"n":12345678901234567890123,"d":0.1000000000000000055511151231257827,"s":"\u0000"}`},
		{name: "any legal character in the address", body: `{"aiAgentAddress":"a.b/c@d+e%20:f/日本/ü","payload":{}}`, address: "a.b/c@d+e%20:f/日本/ü", payload: `{}`},
		{name: "256-byte address", body: `{"aiAgentAddress":"` + strings.Repeat("€", 85) + `x","payload":{}}`, address: strings.Repeat("€", 85) + "x", payload: `{}`},
		{name: "null metadata", body: `{"aiAgentAddress":"a","payload":{},"senderMetadata":null}`, address: "a", payload: `{}`},
		{name: "null metadata fields", body: `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":null,"correlationId":"c"}}`, address: "a", payload: `{}`, corr: "c", hasMetadata: true},
		{name: "unknown fields ignored", body: `{"x":1,"aiAgentAddress":"a","payload":{"k":[]},"senderMetadata":{"y":{}}}`, address: "a", payload: `{"k":[]}`, hasMetadata: true},
		{name: "escaped address", body: `{"aiAgentAddress":"\u0061\/b","payload":{}}`, address: "a/b", payload: `{}`},
		{name: "256-byte metadata", body: `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"senderProvidedMessageId":"` + strings.Repeat("s", 256) + `"}}`,
			address: "a", payload: `{}`, spid: strings.Repeat("s", 256), hasMetadata: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, err := message.Parse([]byte(tc.body))
			require.NoError(t, err)
			require.Equal(t, tc.address, env.AIAgentAddress)
			require.Equal(t, tc.payload, string(env.Payload))
			require.Equal(t, tc.service, env.ServiceName())
			require.Equal(t, tc.corr, env.CorrelationID())
			require.Equal(t, tc.spid, env.SenderProvidedMessageID())
			require.Equal(t, tc.hasMetadata, env.SenderMetadata != nil)
		})
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 257)
	for _, tc := range []struct{ name, body, msg string }{
		{"malformed", `{"aiAgentAddress":`, "malformed JSON"},
		{"empty", ``, "malformed JSON"},
		{"array body", `[]`, "must be a JSON object"},
		{"string body", `"x"`, "must be a JSON object"},
		{"missing address", `{"payload":{}}`, "aiAgentAddress is required"},
		{"empty address", `{"aiAgentAddress":"","payload":{}}`, "aiAgentAddress is required"},
		{"long address", `{"aiAgentAddress":"` + long + `","payload":{}}`, "longer than 256 bytes"},
		{"space", `{"aiAgentAddress":"a b","payload":{}}`, "whitespace or a control character at byte 1"},
		{"line separator", `{"aiAgentAddress":"a\u2028","payload":{}}`, "whitespace"},
		{"DEL", `{"aiAgentAddress":"a\u007f","payload":{}}`, "control character"},
		{"C1 control", `{"aiAgentAddress":"a\u0085","payload":{}}`, "control character"},
		{"address number", `{"aiAgentAddress":1,"payload":{}}`, "aiAgentAddress must be a string"},
		{"missing payload", `{"aiAgentAddress":"a"}`, "payload is required"},
		{"null payload", `{"aiAgentAddress":"a","payload":null}`, "payload is required"},
		{"array payload", `{"aiAgentAddress":"a","payload":[]}`, "payload must be a JSON object"},
		{"string payload", `{"aiAgentAddress":"a","payload":"x"}`, "payload must be a JSON object"},
		{"number payload", `{"aiAgentAddress":"a","payload":1}`, "payload must be a JSON object"},
		{"metadata string", `{"aiAgentAddress":"a","payload":{},"senderMetadata":"x"}`, "senderMetadata must be a object"},
		{"serviceName number", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":1}}`, "senderMetadata.serviceName must be a string"},
		{"long serviceName", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":"` + long + `"}}`, "senderMetadata.serviceName is longer than 256 bytes"},
		{"long correlationId", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"correlationId":"` + long + `"}}`, "senderMetadata.correlationId is longer"},
		{"NUL in correlationId", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"correlationId":"a\u0000b"}}`, "senderMetadata.correlationId contains U+0000"},
		{"NUL in serviceName", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":"\u0000"}}`, "senderMetadata.serviceName contains U+0000"},
		{"NUL in senderProvidedMessageId", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"senderProvidedMessageId":"x\u0000"}}`, "senderMetadata.senderProvidedMessageId contains U+0000"},
		{"NUL in orderingKey", `{"aiAgentAddress":"a","payload":{},"senderMetadata":{"orderingKey":"\u0000k"}}`, "senderMetadata.orderingKey contains U+0000"},
		{"NUL in address", `{"aiAgentAddress":"a\u0000","payload":{}}`, "control character"},
		{"not UTF-8", "{\"aiAgentAddress\":\"\xff\",\"payload\":{}}", "not valid UTF-8"},
		{"surrogate bytes in an unknown field", "{\"aiAgentAddress\":\"a\",\"payload\":{},\"x\":\"\xed\xa0\x80\"}", "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, err := message.Parse([]byte(tc.body))
			require.Nil(t, env)
			var verr *message.ValidationError
			require.True(t, errors.As(err, &verr), "a *ValidationError, got %T %v", err, err)
			require.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestMarshalKeepsTheValue(t *testing.T) {
	t.Parallel()
	body := `{"aiAgentAddress":"a/ü","payload":{"n":12345678901234567890123,"d":0.1000000000000000055511151231257827,"s":"\u0000"},"senderMetadata":{"serviceName":"s"}}`
	env, err := message.Parse([]byte(body))
	require.NoError(t, err)
	out := env.Marshal()
	again, err := message.Parse(out)
	require.NoError(t, err)
	require.Equal(t, env, again)
	require.Equal(t, `{"n":12345678901234567890123,"d":0.1000000000000000055511151231257827,"s":"\u0000"}`, string(again.Payload))
}

func TestIDs(t *testing.T) {
	t.Parallel()
	parse := func(body string) *message.Envelope {
		env, err := message.Parse([]byte(body))
		require.NoError(t, err)
		return env
	}
	withSPID := parse(`{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":"crm","senderProvidedMessageId":"m-1"}}`)
	id1, derived := withSPID.ID()
	require.True(t, derived)
	require.Equal(t, uuid.Version(5), id1.Version())
	id2, _ := withSPID.ID()
	require.Equal(t, id1, id2, "stable")
	require.Equal(t, message.SenderID("crm", "m-1"), id1)

	// Pinned: changing the namespace or the name layout would change every
	// producer's ids and break their retries across a deploy.
	require.Equal(t, id1.String(), message.SenderID("crm", "m-1").String())
	require.NotEqual(t, message.SenderID("a", "bc"), message.SenderID("ab", "c"), "service name is length-prefixed")
	require.NotEqual(t, message.SenderID("", "m-1"), message.SenderID("crm", "m-1"))

	noService := parse(`{"aiAgentAddress":"a","payload":{},"senderMetadata":{"senderProvidedMessageId":"m-1"}}`)
	id3, _ := noService.ID()
	require.Equal(t, message.SenderID("", "m-1"), id3)

	fresh := parse(`{"aiAgentAddress":"a","payload":{}}`)
	a, derived := fresh.ID()
	require.False(t, derived)
	b, _ := fresh.ID()
	require.Equal(t, uuid.Version(7), a.Version())
	require.NotEqual(t, a, b)
	require.Equal(t, strings.ToLower(a.String()), a.String())
}

func TestDirectID(t *testing.T) {
	t.Parallel()
	env, err := message.Parse([]byte(`{"aiAgentAddress":"a","payload":{},"senderMetadata":{"serviceName":"crm","senderProvidedMessageId":"m-1"}}`))
	require.NoError(t, err)
	u := "0190a4c8-7f5e-7d2c-9a61-0b3c4d5e6f70"
	require.Equal(t, u, message.DirectID(u, env, "S", 1).String(), "a UUID header is the id")
	require.Equal(t, u, message.DirectID(strings.ToUpper(u), nil, "S", 1).String(), "in canonical form")

	h := message.DirectID("crm-msg-abc", nil, "S", 1)
	require.Equal(t, uuid.Version(5), h.Version())
	require.Equal(t, h, message.DirectID("crm-msg-abc", env, "S", 2), "any other header: a UUIDv5 of it")
	require.NotEqual(t, h, message.DirectID("{"+u+"}", nil, "S", 1), "braced or urn forms are not taken as-is")
	require.Equal(t, message.DirectID("{"+u+"}", nil, "S", 1).Version(), uuid.Version(5))

	require.Equal(t, message.SenderID("crm", "m-1"), message.DirectID("", env, "S", 1), "no header: the HTTP derivation")

	s1 := message.DirectID("", nil, "ROUTER_MESSAGES", 1)
	require.Equal(t, s1, message.DirectID("", nil, "ROUTER_MESSAGES", 1))
	require.NotEqual(t, s1, message.DirectID("", nil, "ROUTER_MESSAGES", 2))
	require.NotEqual(t, s1, message.DirectID("", nil, "OTHER", 1))
}

// FuzzParse checks Parse never panics, that what it accepts satisfies the contract,
// and that the published form parses back to the same envelope (so the router reads
// what ingest validated). Seeds: f.Add below and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"aiAgentAddress":"agent-sales@example.com","payload":{"command":"processData","value":42},"senderMetadata":{"serviceName":"CRM_System","correlationId":"crm-corr-123","senderProvidedMessageId":"crm-msg-abc"}}`,
		`{"aiAgentAddress":"a","payload":{}}`,
		`{"aiAgentAddress":"a","payload":null}`,
		`{"aiAgentAddress":"a b","payload":{}}`,
		`{"aiAgentAddress":"a","payload":{"<&>":"\u2028"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := message.Parse(body)
		if err != nil {
			var verr *message.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		a := env.AIAgentAddress
		if a == "" || len(a) > message.MaxAddressBytes || !utf8.ValidString(a) ||
			strings.IndexFunc(a, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			t.Fatalf("accepted address %q", a)
		}
		if p := bytes.TrimSpace(env.Payload); len(p) == 0 || p[0] != '{' || !json.Valid(p) {
			t.Fatalf("accepted payload %q", env.Payload)
		}
		for _, v := range []string{a, env.ServiceName(), env.CorrelationID(), env.SenderProvidedMessageID(), env.OrderingKey()} {
			if len(v) > message.MaxMetadataBytes {
				t.Fatalf("accepted metadata of %d bytes", len(v))
			}
			if !pgtext.Valid(v) {
				t.Fatalf("accepted %q, which Postgres cannot store", v)
			}
		}

		out := env.Marshal()
		again, err := message.Parse(out)
		if err != nil {
			t.Fatalf("the published form does not parse: %v\n%s", err, out)
		}
		if again.AIAgentAddress != env.AIAgentAddress || again.ServiceName() != env.ServiceName() ||
			again.CorrelationID() != env.CorrelationID() || again.SenderProvidedMessageID() != env.SenderProvidedMessageID() {
			t.Fatalf("round trip changed the envelope: %+v -> %+v", env, again)
		}
		if !jsonEqual(t, env.Payload, again.Payload) {
			t.Fatalf("round trip changed the payload: %s -> %s", env.Payload, again.Payload)
		}
		if !bytes.Equal(out, again.Marshal()) {
			t.Fatalf("Marshal is not a fixpoint:\n%s\n%s", out, again.Marshal())
		}
		if env.SenderProvidedMessageID() != "" {
			id1, _ := env.ID()
			id2, _ := again.ID()
			if id1 != id2 {
				t.Fatal("derived id changed across the round trip")
			}
		}
	})
}

// jsonEqual compares two JSON texts as values, numbers by their exact text.
func jsonEqual(t *testing.T, a, b []byte) bool {
	decode := func(x []byte) any {
		d := json.NewDecoder(bytes.NewReader(x))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("decoding %q: %v", x, err)
		}
		return v
	}
	va, vb := decode(a), decode(b)
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct{ name, body string }{
		{"example", `{"aiAgentAddress":"agent-sales@example.com","payload":{"command":"processData","value":42},"senderMetadata":{"serviceName":"CRM_System","correlationId":"crm-corr-123","senderProvidedMessageId":"crm-msg-abc"}}`},
		{"4KiB_payload", `{"aiAgentAddress":"agent-sales@example.com","payload":{"data":"` + strings.Repeat("x", 4096) + `"},"senderMetadata":{"serviceName":"CRM_System"}}`},
	} {
		body := []byte(bc.body)
		for _, marshal := range []bool{false, true} {
			name := bc.name + "/parse+id"
			if marshal {
				name += "+marshal"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					env, err := message.Parse(body)
					if err != nil {
						b.Fatal(err)
					}
					env.ID()
					if marshal {
						_ = env.Marshal()
					}
				}
			})
		}
	}
}

// The published envelope carries the payload's bytes exactly as submitted.
func TestMarshalKeepsPayloadBytes(t *testing.T) {
	t.Parallel()
	payload := "{ \"html\": \"<b>&</b>\",\n  \"n\": 1.50e+3 }"
	env, err := message.Parse([]byte(`{"aiAgentAddress":"a","payload":` + payload + `}`))
	require.NoError(t, err)
	again, err := message.Parse(env.Marshal())
	require.NoError(t, err)
	require.Equal(t, payload, string(again.Payload))
}

func TestExpiresAtAndOrderingKey(t *testing.T) {
	t.Parallel()
	env, err := message.Parse([]byte(`{"aiAgentAddress":"a","payload":{},"senderMetadata":{"orderingKey":"conv-1","expiresAt":"2026-12-01T10:00:00.5+01:00"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if env.OrderingKey() != "conv-1" {
		t.Fatalf("orderingKey = %q", env.OrderingKey())
	}
	at, ok := env.ExpiresAt()
	if !ok || !at.Equal(time.Date(2026, 12, 1, 9, 0, 0, 5e8, time.UTC)) {
		t.Fatalf("expiresAt = %v %v", at, ok)
	}
	for _, bad := range []string{"2026-12-01T10:00:00", "2026-12-01", "tomorrow", "2026-12-01 10:00:00Z"} {
		_, err := message.Parse([]byte(`{"aiAgentAddress":"a","payload":{},"senderMetadata":{"expiresAt":"` + bad + `"}}`))
		var ve *message.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("expiresAt %q: err = %v, want a ValidationError", bad, err)
		}
	}
	// Both survive Marshal, so the router sees what ingest accepted.
	again, err := message.Parse(env.Marshal())
	if err != nil || again.OrderingKey() != "conv-1" || again.SenderMetadata.ExpiresAt != env.SenderMetadata.ExpiresAt {
		t.Fatalf("round trip: %+v %v", again, err)
	}
}
