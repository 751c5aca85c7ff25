package mapping

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping/mappingtest"
)

// Signing secret keys are 24 to 64 bytes (DESIGN §4, Standard Webhooks).
func TestValidateSigningSecretKeyLength(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 16, 23, 65, 128} {
		err := ValidateSigningSecrets([]string{mappingtest.Secret(n)})
		require.Error(t, err, "%d-byte key", n)
		require.NotContains(t, err.Error(), mappingtest.Secret(n)[6:], "never echo the secret")
	}
	for _, n := range []int{24, 32, 64} {
		require.NoError(t, ValidateSigningSecrets([]string{mappingtest.Secret(n)}), "%d-byte key", n)
	}
}

func TestMappingJSON(t *testing.T) {
	t.Parallel()
	m := Mapping{
		AIAgentAddress: "a", InboxDestinationType: TypeNATSSubject, InboxName: "s", Status: StatusActive,
		RegistrationTimestamp: time.Date(2026, 11, 28, 16, 4, 5, 123456789, time.FixedZone("X", 3600)),
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	require.JSONEq(t, `{"aiAgentAddress":"a","inboxDestinationType":"NATS_SUBJECT","inboxName":"s","status":"ACTIVE",
		"registrationTimestamp":"2026-11-28T15:04:05.123Z"}`, string(b), "UTC, milliseconds, zero times omitted")

	var back Mapping
	require.NoError(t, json.Unmarshal([]byte(`{"aiAgentAddress":"a","inboxDestinationType":"NATS_SUBJECT","inboxName":"s",
		"status":"ACTIVE","registrationTimestamp":"2026-01-01T00:00:00","lastUpdatedTimestamp":"2026-01-01T00:00:00.5+02:00","extra":1}`), &back))
	require.True(t, back.RegistrationTimestamp.IsZero(), "an odd timestamp does not fail the mapping")
	require.Equal(t, time.Date(2025, 12, 31, 22, 0, 0, 5e8, time.UTC), back.LastUpdatedTimestamp)
}
