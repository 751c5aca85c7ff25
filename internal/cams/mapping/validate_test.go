package mapping

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping/mappingtest"
)

// agentSubjects look close to system subjects but are ordinary agent inboxes.
var agentSubjects = []string{
	"router.messagesx", "routers.messages", "agents.router.messages", "inbox._INBOX", "_INBOXES.a", "a$b", "JS.API",
}

func TestValidateSubjectRefusesSystemSubjects(t *testing.T) {
	t.Parallel()
	for _, s := range mappingtest.SystemSubjects {
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
