package mapping

import (
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
