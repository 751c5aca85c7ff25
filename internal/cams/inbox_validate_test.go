package cams

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// systemSubjects are NATS subjects that belong to the system itself (DESIGN §4):
// no mapping may point an agent's inbox at them.
var systemSubjects = []string{
	"$JS.API.STREAM.PURGE.ROUTER_MESSAGES",
	"$JS.API.STREAM.DELETE.ROUTER_MESSAGES",
	"$JS.ACK.ROUTER_MESSAGES.router.1.1.1.1.0",
	"$KV.bucket.key",
	"$O.store.chunks",
	"$SYS.REQ.SERVER.PING",
	"$G",
	"_INBOX.abc",
	"_INBOX",
	"router.messages",
	"router.messages.crm",
	"router.messages.a.b.c",
}

// agentSubjects look close to system subjects but are ordinary agent inboxes.
var agentSubjects = []string{
	"router.messagesx", "routers.messages", "agents.router.messages", "inbox._INBOX", "_INBOXES.a", "a$b", "JS.API",
}

func TestValidateSubjectRefusesSystemSubjects(t *testing.T) {
	t.Parallel()
	for _, s := range systemSubjects {
		err := ValidateInbox(TypeNATSSubject, s)
		require.Error(t, err, s)
		var ve *ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, "inboxName", ve.Field)
	}
	for _, s := range agentSubjects {
		require.NoError(t, ValidateInbox(TypeNATSSubject, s), s)
	}
}

// TestServerRefusesSystemSubjects: the reference CAMS answers 400 to a mapping, new
// or updated, whose NATS inbox is a system subject, and stores nothing.
func TestServerRefusesSystemSubjects(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	ok := b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
		"aiAgentAddress": "existing", "inboxDestinationType": TypeNATSSubject, "inboxName": "agents.existing",
	}, "")
	require.Equal(t, http.StatusCreated, ok.status, "%s", ok.body)
	for _, s := range systemSubjects {
		b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
			"aiAgentAddress": "a@x", "inboxDestinationType": TypeNATSSubject, "inboxName": s,
		}, "").requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
		b.call(t, "PUT", agentPath("existing"), map[string]any{"inboxName": s}, "").
			requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
	}
	b.call(t, "GET", agentPath("a@x"), nil, "").requireError(t, http.StatusNotFound, "NOT_FOUND")
	require.Equal(t, "agents.existing", b.call(t, "GET", agentPath("existing"), nil, "").mapping(t).InboxName)
}
