package mapping

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUpdateInboxAuthRoundTrip: what a client sets in InboxAuth is what the server
// reads back as raw JSON, so absent, removed and replaced credentials stay apart.
func TestUpdateInboxAuthRoundTrip(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		set  any
		wire string
		read any
	}{
		"absent":   {nil, `{"status":"INACTIVE"}`, nil},
		"removed":  {json.RawMessage("null"), `{"status":"INACTIVE","inboxAuth":null}`, json.RawMessage("null")},
		"replaced": {&InboxAuth{Type: AuthBearer, Token: "t"}, `{"status":"INACTIVE","inboxAuth":{"type":"BEARER","token":"t"}}`, json.RawMessage(`{"type":"BEARER","token":"t"}`)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			status := StatusInactive
			b, err := json.Marshal(&Update{Status: &status, InboxAuth: tc.set})
			require.NoError(t, err)
			require.JSONEq(t, tc.wire, string(b))

			var got Update
			require.NoError(t, json.Unmarshal(b, &got))
			require.Equal(t, Update{Status: &status, InboxAuth: tc.read}, got)
		})
	}
}
