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
		Health:                &Health{Status: HealthUnhealthy, ReportedAt: time.Date(2026, 11, 28, 17, 0, 0, 0, time.FixedZone("Y", 7200))},
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	require.JSONEq(t, `{"aiAgentAddress":"a","inboxDestinationType":"NATS_SUBJECT","inboxName":"s","status":"ACTIVE",
		"registrationTimestamp":"2026-11-28T15:04:05.123Z","health":{"status":"UNHEALTHY","reportedAt":"2026-11-28T15:00:00.000Z"}}`,
		string(b), "UTC, milliseconds, zero times omitted")
	b, err = json.Marshal(Mapping{AIAgentAddress: "a", Health: &Health{Status: HealthHealthy}})
	require.NoError(t, err)
	require.JSONEq(t, `{"aiAgentAddress":"a","inboxDestinationType":"","inboxName":"","health":{"status":"HEALTHY"}}`,
		string(b), "no status for Create to default, no zero times")

	back := Mapping{Description: "left from before"}
	require.NoError(t, json.Unmarshal([]byte(`{"aiAgentAddress":"a","inboxDestinationType":"NATS_SUBJECT","inboxName":"s",
		"status":"ACTIVE","registrationTimestamp":"2026-01-01T00:00:00","lastUpdatedTimestamp":"2026-01-01T00:00:00.5+02:00","extra":1,
		"health":{"status":"HEALTHY","reportedAt":"yesterday"}}`), &back))
	require.Empty(t, back.Description, "decoding replaces the whole mapping")
	require.True(t, back.RegistrationTimestamp.IsZero(), "an odd timestamp does not fail the mapping")
	require.Equal(t, time.Date(2025, 12, 31, 22, 0, 0, 5e8, time.UTC), back.LastUpdatedTimestamp)
	require.Equal(t, &Health{Status: HealthHealthy}, back.Health, "nor an odd health timestamp")
}
