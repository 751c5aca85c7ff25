package routing_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams"
	"github.com/msgrouter/msgrouter/internal/routing"
	"github.com/msgrouter/msgrouter/internal/stream"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	active := func(typ, name string) *cams.Mapping {
		return &cams.Mapping{Status: cams.StatusActive, InboxDestinationType: typ, InboxName: name}
	}
	cases := []struct {
		name      string
		m         *cams.Mapping
		err       error
		wantType  string
		reason    string
		transient bool
	}{
		{name: "nats subject", m: active(cams.TypeNATSSubject, "agents.sales.inbox"), wantType: cams.TypeNATSSubject},
		{name: "http endpoint", m: active(cams.TypeHTTPEndpoint, "https://agent.example.com/inbox"), wantType: cams.TypeHTTPEndpoint},
		{name: "http with port and query", m: active(cams.TypeHTTPEndpoint, "http://10.0.0.1:8080/in?x=1"), wantType: cams.TypeHTTPEndpoint},
		{name: "not found", err: fmt.Errorf("lookup: %w", cams.ErrNotFound), reason: routing.ReasonAgentNotFound},
		{name: "inactive", m: &cams.Mapping{Status: cams.StatusInactive, InboxDestinationType: cams.TypeNATSSubject, InboxName: "a.b"}, reason: routing.ReasonAgentInactive},
		{name: "inactive and misconfigured is inactive", m: &cams.Mapping{Status: cams.StatusInactive, InboxDestinationType: "SQS"}, reason: routing.ReasonAgentInactive},
		{name: "unknown status", m: &cams.Mapping{Status: "PAUSED", InboxDestinationType: cams.TypeNATSSubject, InboxName: "a.b"}, reason: routing.ReasonConfigError},
		{name: "unknown type", m: active("SQS_QUEUE", "q"), reason: routing.ReasonConfigError},
		{name: "empty inbox", m: active(cams.TypeNATSSubject, ""), reason: routing.ReasonConfigError},
		{name: "wildcard subject", m: active(cams.TypeNATSSubject, "agents.*"), reason: routing.ReasonConfigError},
		{name: "full wildcard subject", m: active(cams.TypeNATSSubject, "agents.>"), reason: routing.ReasonConfigError},
		{name: "empty token", m: active(cams.TypeNATSSubject, "agents..inbox"), reason: routing.ReasonConfigError},
		{name: "space in subject", m: active(cams.TypeNATSSubject, "agents inbox"), reason: routing.ReasonConfigError},
		{name: "relative url", m: active(cams.TypeHTTPEndpoint, "/inbox"), reason: routing.ReasonConfigError},
		{name: "ftp url", m: active(cams.TypeHTTPEndpoint, "ftp://x/y"), reason: routing.ReasonConfigError},
		{name: "url without host", m: active(cams.TypeHTTPEndpoint, "http:///x"), reason: routing.ReasonConfigError},
		{name: "garbage url", m: active(cams.TypeHTTPEndpoint, "http://[::1"), reason: routing.ReasonConfigError},
		{name: "jetstream api purge", m: active(cams.TypeNATSSubject, "$JS.API.STREAM.PURGE.ROUTER_MESSAGES"), reason: routing.ReasonConfigError},
		{name: "jetstream ack", m: active(cams.TypeNATSSubject, "$JS.ACK.ROUTER_MESSAGES.router.1.2.3.4.0"), reason: routing.ReasonConfigError},
		{name: "kv", m: active(cams.TypeNATSSubject, "$KV.b.k"), reason: routing.ReasonConfigError},
		{name: "object store", m: active(cams.TypeNATSSubject, "$O.b.c"), reason: routing.ReasonConfigError},
		{name: "system account", m: active(cams.TypeNATSSubject, "$SYS.REQ.SERVER.PING"), reason: routing.ReasonConfigError},
		{name: "reply inbox", m: active(cams.TypeNATSSubject, "_INBOX.x.y"), reason: routing.ReasonConfigError},
		{name: "router subject", m: active(cams.TypeNATSSubject, "router.messages"), reason: routing.ReasonConfigError},
		{name: "under router subject", m: active(cams.TypeNATSSubject, "router.messages.crm"), reason: routing.ReasonConfigError},
		{name: "wildcard inside token", m: active(cams.TypeNATSSubject, "agents.a*b"), reason: routing.ReasonConfigError},
		{name: "lookalike of router subject", m: active(cams.TypeNATSSubject, "router.messagesx"), wantType: cams.TypeNATSSubject},
		{name: "cams down", err: errors.New("connection refused"), transient: true},
		{name: "nil mapping", transient: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := routing.Decide(tc.m, tc.err)
			if tc.transient {
				require.ErrorIs(t, err, routing.ErrTransient)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.reason, d.Reason)
			require.Equal(t, tc.reason != "", d.Rejected())
			if tc.reason == "" {
				require.Equal(t, tc.wantType, d.DestType)
				require.Equal(t, tc.m.InboxName, d.DestName)
			} else {
				require.NotEmpty(t, d.Detail)
			}
		})
	}
}

// The reserved subject the shared validation refuses is the one the stream captures.
func TestRouterSubjectIsTheStreams(t *testing.T) {
	t.Parallel()
	require.Equal(t, stream.Subject, cams.RouterSubject)
	require.Equal(t, stream.Subject+".>", stream.SubjectAll)
}

func BenchmarkDecide(b *testing.B) {
	m := &cams.Mapping{Status: cams.StatusActive, InboxDestinationType: cams.TypeHTTPEndpoint, InboxName: "https://agent.example.com/inbox"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := routing.Decide(m, nil); err != nil {
			b.Fatal(err)
		}
	}
}
