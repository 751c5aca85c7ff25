package mapping_test

import (
	"encoding/json"
	"testing"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

// FuzzMappingDecode feeds arbitrary CAMS answers to the decoder the router relies
// on: it must never panic, and a mapping that decodes and validates must survive an
// encode/decode round trip unchanged (the router and cmd/cams agree on the wire).
func FuzzMappingDecode(f *testing.F) {
	for _, seed := range []string{
		`{"aiAgentAddress":"agent-sales@example.com","inboxDestinationType":"NATS_SUBJECT","inboxName":"agents.sales.inbox","status":"ACTIVE","registrationTimestamp":"2026-01-01T00:00:00.000Z","lastUpdatedTimestamp":"2026-01-01T00:00:00.000Z"}`,
		`{"aiAgentAddress":"w","inboxDestinationType":"HTTP_ENDPOINT","inboxName":"https://a.example/x?y=1","status":"INACTIVE","signingSecrets":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}`,
		`{"aiAgentAddress":"a/b%c","inboxDestinationType":"SQS","inboxName":"","status":"PAUSED"}`,
		`{"registrationTimestamp":"not a time","lastUpdatedTimestamp":12}`,
		`{"signingSecrets":"whsec_x"}`,
		`[]`, `null`, `{"aiAgentAddress":"\u0000"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m mapping.Mapping
		if err := json.Unmarshal(data, &m); err != nil {
			return
		}
		if m.Validate() != nil {
			return
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("a valid mapping does not encode: %v", err)
		}
		var again mapping.Mapping
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		out2, _ := json.Marshal(again)
		if string(out) != string(out2) {
			t.Fatalf("round trip changed the mapping:\n%s\n%s", out, out2)
		}
	})
}
