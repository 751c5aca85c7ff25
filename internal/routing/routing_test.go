package routing_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/routing"
	"github.com/msgrouter/msgrouter/internal/stream"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	active := func(typ, name string) *mapping.Mapping {
		return &mapping.Mapping{Status: mapping.StatusActive, InboxDestinationType: typ, InboxName: name}
	}
	cases := []struct {
		name      string
		m         *mapping.Mapping
		err       error
		wantType  string
		reason    string
		transient bool
		hold      bool
	}{
		{name: "nats subject", m: active(mapping.TypeNATSSubject, "agents.sales.inbox"), wantType: mapping.TypeNATSSubject},
		{name: "http endpoint", m: active(mapping.TypeHTTPEndpoint, "https://agent.example.com/inbox"), wantType: mapping.TypeHTTPEndpoint},
		{name: "http with port and query", m: active(mapping.TypeHTTPEndpoint, "http://10.0.0.1:8080/in?x=1"), wantType: mapping.TypeHTTPEndpoint},
		{name: "not found", err: fmt.Errorf("lookup: %w", mapping.ErrNotFound), reason: routing.ReasonAgentNotFound},
		{name: "inactive", m: &mapping.Mapping{Status: mapping.StatusInactive, InboxDestinationType: mapping.TypeNATSSubject, InboxName: "a.b"}, reason: routing.ReasonAgentInactive},
		{name: "inactive, hold", m: &mapping.Mapping{Status: mapping.StatusInactive, InactivePolicy: mapping.InactivePolicyHold,
			InboxDestinationType: mapping.TypeNATSSubject, InboxName: "a.b"}, wantType: mapping.TypeNATSSubject, hold: true},
		{name: "inactive, hold, misconfigured is rejected", m: &mapping.Mapping{Status: mapping.StatusInactive,
			InactivePolicy: mapping.InactivePolicyHold, InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.*"}, reason: routing.ReasonConfigError},
		{name: "inactive and misconfigured is inactive", m: &mapping.Mapping{Status: mapping.StatusInactive, InboxDestinationType: "SQS"}, reason: routing.ReasonAgentInactive},
		{name: "unknown status", m: &mapping.Mapping{Status: "PAUSED", InboxDestinationType: mapping.TypeNATSSubject, InboxName: "a.b"}, reason: routing.ReasonConfigError},
		{name: "unknown type", m: active("SQS_QUEUE", "q"), reason: routing.ReasonConfigError},
		{name: "empty inbox", m: active(mapping.TypeNATSSubject, ""), reason: routing.ReasonConfigError},
		{name: "wildcard subject", m: active(mapping.TypeNATSSubject, "agents.*"), reason: routing.ReasonConfigError},
		{name: "full wildcard subject", m: active(mapping.TypeNATSSubject, "agents.>"), reason: routing.ReasonConfigError},
		{name: "empty token", m: active(mapping.TypeNATSSubject, "agents..inbox"), reason: routing.ReasonConfigError},
		{name: "space in subject", m: active(mapping.TypeNATSSubject, "agents inbox"), reason: routing.ReasonConfigError},
		{name: "relative url", m: active(mapping.TypeHTTPEndpoint, "/inbox"), reason: routing.ReasonConfigError},
		{name: "ftp url", m: active(mapping.TypeHTTPEndpoint, "ftp://x/y"), reason: routing.ReasonConfigError},
		{name: "url without host", m: active(mapping.TypeHTTPEndpoint, "http:///x"), reason: routing.ReasonConfigError},
		{name: "garbage url", m: active(mapping.TypeHTTPEndpoint, "http://[::1"), reason: routing.ReasonConfigError},
		{name: "jetstream api purge", m: active(mapping.TypeNATSSubject, "$JS.API.STREAM.PURGE.ROUTER_MESSAGES"), reason: routing.ReasonConfigError},
		{name: "jetstream ack", m: active(mapping.TypeNATSSubject, "$JS.ACK.ROUTER_MESSAGES.router.1.2.3.4.0"), reason: routing.ReasonConfigError},
		{name: "kv", m: active(mapping.TypeNATSSubject, "$KV.b.k"), reason: routing.ReasonConfigError},
		{name: "object store", m: active(mapping.TypeNATSSubject, "$O.b.c"), reason: routing.ReasonConfigError},
		{name: "system account", m: active(mapping.TypeNATSSubject, "$SYS.REQ.SERVER.PING"), reason: routing.ReasonConfigError},
		{name: "reply inbox", m: active(mapping.TypeNATSSubject, "_INBOX.x.y"), reason: routing.ReasonConfigError},
		{name: "router subject", m: active(mapping.TypeNATSSubject, "router.messages"), reason: routing.ReasonConfigError},
		{name: "under router subject", m: active(mapping.TypeNATSSubject, "router.messages.crm"), reason: routing.ReasonConfigError},
		{name: "wildcard inside token", m: active(mapping.TypeNATSSubject, "agents.a*b"), reason: routing.ReasonConfigError},
		{name: "lookalike of router subject", m: active(mapping.TypeNATSSubject, "router.messagesx"), wantType: mapping.TypeNATSSubject},
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
			require.Equal(t, tc.hold, d.Hold)
			require.Equal(t, tc.hold, routing.Held(tc.m, tc.err) && !d.Rejected())
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

// Route decides over what its lookup answered, for the address asked, and keeps
// the lookup's error reachable (a cancelled lookup is not a CAMS failure to log).
func TestRoute(t *testing.T) {
	t.Parallel()
	var asked string
	lookup := func(m *mapping.Mapping, err error) routing.Lookup {
		return func(_ context.Context, address string) (*mapping.Mapping, error) { asked = address; return m, err }
	}
	d, err := routing.Route(t.Context(), lookup(&mapping.Mapping{Status: mapping.StatusActive,
		InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.a"}, nil), "a@example.com")
	require.NoError(t, err)
	require.Equal(t, "a@example.com", asked)
	require.Equal(t, routing.Decision{DestType: mapping.TypeNATSSubject, DestName: "agents.a"}, d)

	d, err = routing.Route(t.Context(), lookup(nil, mapping.ErrNotFound), "b@example.com")
	require.NoError(t, err)
	require.Equal(t, routing.ReasonAgentNotFound, d.Reason)

	_, err = routing.Route(t.Context(), lookup(nil, fmt.Errorf("lookup: %w", context.Canceled)), "c@example.com")
	require.ErrorIs(t, err, routing.ErrTransient)
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, routing.Held(nil, mapping.ErrNotFound))
}

// The reserved subject the shared validation refuses is the one the stream captures.
func TestRouterSubjectIsTheStreams(t *testing.T) {
	t.Parallel()
	require.Equal(t, stream.Subject, mapping.RouterSubject)
	require.Equal(t, stream.Subject+".>", stream.SubjectAll)
}

func BenchmarkDecide(b *testing.B) {
	m := &mapping.Mapping{Status: mapping.StatusActive, InboxDestinationType: mapping.TypeHTTPEndpoint, InboxName: "https://agent.example.com/inbox"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := routing.Decide(m, nil); err != nil {
			b.Fatal(err)
		}
	}
}
