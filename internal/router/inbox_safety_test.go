package router_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

// TestSystemSubjectInboxIsConfigError (issue 8 item 5, DESIGN §4): a mapping whose
// NATS inbox is a system subject or the router's own is rejected as CONFIG_ERROR and
// nothing is published there: the stream is not purged, no delivery loops back.
func TestSystemSubjectInboxIsConfigError(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	ctx := context.Background()
	bad := map[string]string{
		"purger":  "$JS.API.STREAM.PURGE.ROUTER_MESSAGES",
		"deleter": "$JS.API.STREAM.DELETE.ROUTER_MESSAGES",
		"looper":  "router.messages.loop",
		"replier": "_INBOX.x",
	}
	for addr, subject := range bad {
		e.cams.set(addr, mapping.TypeNATSSubject, subject, mapping.StatusActive)
	}
	e.cams.set("good", mapping.TypeNATSSubject, "inbox.good", mapping.StatusActive)

	goodIDs := e.publishN("good", 10)
	badIDs := map[string]string{}
	for addr := range bad {
		badIDs[addr] = uuid.NewString()
		e.publish(body(addr, `{}`), badIDs[addr])
	}
	for addr, id := range badIDs {
		v := e.waitStatus(id, "REJECTED")
		require.Equal(t, "CONFIG_ERROR", v.Reason, addr)
		require.Zero(t, v.Attempts, addr)
	}
	for _, id := range goodIDs {
		e.waitStatus(id, "DELIVERED")
	}
	require.Len(t, e.inboxMsgs("inbox.good"), 10)

	// Nothing purged, deleted or looped back: the stream holds exactly what was
	// published, from sequence 1.
	st, err := e.js.Stream(ctx, "ROUTER_MESSAGES")
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 10+len(bad), info.State.Msgs)
	require.EqualValues(t, 1, info.State.FirstSeq)
}

// TestStoredSystemRouteIsNeverDelivered: a message whose stored route is a system
// subject (recorded by a router from before the check) ends REJECTED/CONFIG_ERROR at
// its next attempt instead of being published there.
func TestStoredSystemRouteIsNeverDelivered(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	ctx := context.Background()
	// No stream captures "nocapture.a": every attempt fails and is retried.
	e.cams.set("agent", mapping.TypeNATSSubject, "nocapture.a", mapping.StatusActive)
	id := e.send("agent")
	require.Eventually(t, func() bool {
		_, v := e.get(id)
		return v.Attempts >= 1
	}, 20*time.Second, 20*time.Millisecond)
	pool, err := pgxpool.New(ctx, e.cfg.DatabaseURL)
	require.NoError(t, err)
	defer pool.Close()
	_, err = pool.Exec(ctx, `UPDATE messages SET destination_name = '$JS.API.STREAM.PURGE.ROUTER_MESSAGES' WHERE message_id = $1`, id)
	require.NoError(t, err)
	// A retry follows CAMS's current mapping (DESIGN §5); only when CAMS cannot
	// answer does it go to the stored route, the one a router from before the check
	// may have recorded.
	e.cams.down.Store(true)
	v := e.waitStatus(id, "REJECTED")
	require.Equal(t, "CONFIG_ERROR", v.Reason)
	st, err := e.js.Stream(ctx, "ROUTER_MESSAGES")
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, info.State.Msgs, "not purged")
}

// TestInboxPointingAtCAMSIsForbidden: even with DELIVERY_ALLOW_PRIVATE_NETWORKS=true
// (as in these tests), an HTTP inbox that points at CAMS (or the router's own admin
// API) is refused at dial time: DEAD_LETTERED/DESTINATION_FORBIDDEN, no attempt
// reaches it.
func TestInboxPointingAtCAMSIsForbidden(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	e.cams.set("sneaky", mapping.TypeHTTPEndpoint, e.cams.srv.URL+"/v1/agent-inboxes", mapping.StatusActive)
	id := uuid.NewString()
	e.publish(body("sneaky", `{"aiAgentAddress":"evil","inboxDestinationType":"NATS_SUBJECT","inboxName":"x.y"}`), id)
	v := e.waitStatus(id, "DEAD_LETTERED")
	require.Equal(t, "DESTINATION_FORBIDDEN", v.Reason)
	require.Contains(t, v.LastError, "system's own services")
}
