package router_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams"
)

// TestCAMSFailingForSomeAddressesDoesNotStallOthers (issue 8 item 6, DESIGN §4):
// CAMS answers 500 (or hangs past CAMS_TIMEOUT) for 5 addresses and answers the
// others. With the default cache and a long BREAKER_OPEN_TIMEOUT, continuous traffic
// for healthy agents keeps being delivered within seconds (the CAMS breaker does not
// open, pulling does not pause), the failing agents' messages stay in JetStream, and
// they are delivered once CAMS answers for them.
func TestCAMSFailingForSomeAddressesDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	failing.Store(true)
	isBad := func(addr string) bool { return strings.HasPrefix(addr, "bad-") }
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr, _ := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/v1/agent-inboxes/"))
		if isBad(addr) && failing.Load() {
			if addr == "bad-hang" {
				select { // past CAMS_TIMEOUT: a timeout for this address only
				case <-r.Context().Done():
				case <-time.After(3 * time.Second):
				}
				return
			}
			http.Error(w, `{"errorCode":"INTERNAL","message":"fake failure"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(cams.Mapping{AIAgentAddress: addr, InboxDestinationType: cams.TypeNATSSubject,
			InboxName: "inbox." + strings.NewReplacer("@", "_", ".", "_").Replace(addr), Status: cams.StatusActive})
	}))
	t.Cleanup(fake.Close)
	e := setup(t, map[string]string{
		"CAMS_API_URL":         fake.URL,
		"CAMS_CACHE_TTL":       "30s",
		"CAMS_TIMEOUT":         "500ms",
		"BREAKER_FAILURES":     "5",
		"BREAKER_OPEN_TIMEOUT": "60s", // an opened breaker would stall healthy agents for a minute
	})
	bad := []string{"bad-1", "bad-2", "bad-3", "bad-4", "bad-hang"}

	var badIDs []string
	deadline := time.Now().Add(4 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		// Failing agents' messages keep coming back (Nak'd), and new ones keep coming.
		for _, a := range bad {
			id := uuid.NewString()
			badIDs = append(badIDs, id)
			e.publish(body(a, `{}`), id)
		}
		// A healthy message must be delivered within seconds, every time.
		id := uuid.NewString()
		e.publish(body(fmt.Sprintf("good-%d", i%7), fmt.Sprintf(`{"i":%d}`, i)), id)
		require.Eventually(t, func() bool {
			code, v := e.get(id)
			return code == http.StatusOK && v.Status == "DELIVERED"
		}, 5*time.Second, 10*time.Millisecond, "healthy message %d not delivered while CAMS fails for other addresses", i)
	}
	require.Equal(t, 0.0, gathered(t, e.reg, "msgrouter_breaker_state"), "the CAMS breaker stays closed")

	// The failing agents' messages are still in JetStream (not recorded, not lost).
	for _, id := range badIDs[:5] {
		code, _ := e.get(id)
		require.Equal(t, http.StatusNotFound, code, "not taken over while CAMS fails for its agent")
	}
	// CAMS answers for them again: all delivered.
	failing.Store(false)
	for _, id := range badIDs {
		e.waitStatus(id, "DELIVERED")
	}
	st, err := e.js.Stream(context.Background(), "INBOX")
	require.NoError(t, err)
	info, err := st.Info(context.Background())
	require.NoError(t, err)
	require.GreaterOrEqual(t, info.State.Msgs, uint64(len(badIDs)))
}
