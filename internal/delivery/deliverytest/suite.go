package deliverytest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/delivery"
)

// OddAddresses must survive every hop unchanged (DESIGN §2).
var OddAddresses = []string{
	"agent-sales@example.com",
	"agent/with/slashes?and#hash",
	"100%-sure%20not-decoded",
	"агент@пример.рф",
	"a+b:c;d,e=f&g$h'i(j)k*l!m~n",
	"emoji-🤖@example.com",
}

// OddPayload is a payload whose exact bytes must arrive: big and precise numbers,
// escapes, NUL, non-BMP characters.
const OddPayload = `{"big":123456789012345678901234567890,"dec":0.100000000000000000000000001,` +
	`"nul":"a\u0000b","uni":"héllo 🌍 \u2028 \ud83d\ude00","esc":"\"\\/","nested":{"a":[1,2.50,-0e0]},"empty":{}}`

var accepted = time.Date(2026, 11, 28, 16, 4, 5, 123456789, time.FixedZone("CET", 3600))

// FullDelivery returns a Delivery with every optional attribute set, to
// destType/dest.
func FullDelivery(destType, dest string) *delivery.Delivery {
	return &delivery.Delivery{
		MessageID:       "0192f0c4-7d7e-7cc4-8b1e-3f0a3e6f8d21",
		AIAgentAddress:  "agent-sales@example.com",
		DestType:        destType,
		DestName:        dest,
		Payload:         []byte(`{"command":"processData","value":42}`),
		AcceptedAt:      accepted,
		SenderID:        "CRM_System",
		CorrelationID:   "crm-corr-123",
		SenderMessageID: "crm-msg-abc",
		Traceparent:     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
}

// Run runs the conformance suite on h.Deliverer, each check a parallel subtest:
//
//   - the payload's exact bytes and every attribute arrive (the traceparent as the
//     Delivery holds it once delivered: a tracing decorator replaces it with its
//     span's);
//   - absent optional attributes are omitted;
//   - odd addresses survive (NATS values raw UTF-8, HTTP values path-escaped);
//   - every one of h.Failures is a *delivery.Error classified as its Check says;
//   - an inbox that never answers fails at ctx's deadline as a retryable,
//     breaker-counted failure wrapping context.DeadlineExceeded;
//   - cancelling ctx returns promptly with context.Canceled and no *delivery.Error
//     (cancellation is not a failure).
//
// A decorated Deliverer must let these through: a breaker under test needs a
// failure threshold above len(h.Failures)+1, a rate limit a burst that does not
// hold the suite back.
func Run(t *testing.T, h *Harness) {
	t.Run("payload bytes and every attribute arrive", func(t *testing.T) {
		t.Parallel()
		dest, next := h.Inbox(t)
		d := FullDelivery(h.DestType, dest)
		d.Payload = []byte(OddPayload)
		require.NoError(t, h.Deliverer.Deliver(t.Context(), d))
		r := next(t)
		require.Equal(t, OddPayload, string(r.Body))
		require.NotEmpty(t, d.Traceparent)
		require.Equal(t, map[string]string{
			"messageId":               d.MessageID,
			"aiAgentAddress":          d.AIAgentAddress,
			"timestampPublished":      "2026-11-28T15:04:05.123Z",
			"contentType":             "application/json",
			"senderId":                d.SenderID,
			"correlationId":           d.CorrelationID,
			"senderProvidedMessageId": d.SenderMessageID,
			"traceparent":             d.Traceparent,
		}, r.Attrs)
	})

	t.Run("absent attributes are omitted", func(t *testing.T) {
		t.Parallel()
		dest, next := h.Inbox(t)
		d := &delivery.Delivery{MessageID: "0192f0c4-0000-7001-8000-000000000001", AIAgentAddress: "a@b",
			DestType: h.DestType, DestName: dest, Payload: []byte(`{}`), AcceptedAt: accepted}
		require.NoError(t, h.Deliverer.Deliver(t.Context(), d))
		r := next(t)
		require.Equal(t, "{}", string(r.Body))
		want := map[string]string{
			"messageId":          d.MessageID,
			"aiAgentAddress":     "a@b",
			"timestampPublished": "2026-11-28T15:04:05.123Z",
			"contentType":        "application/json",
		}
		absent := []string{"senderId", "correlationId", "senderProvidedMessageId"}
		if d.Traceparent != "" { // a tracing decorator's own span
			want["traceparent"] = d.Traceparent
		} else {
			absent = append(absent, "traceparent")
		}
		require.Equal(t, want, r.Attrs)
		for _, a := range absent {
			for name := range r.Raw {
				require.NotEqual(t, strings.ToLower(h.AttrHeader[a]), strings.ToLower(name), "absent %s must be omitted", a)
			}
		}
	})

	t.Run("odd addresses survive", func(t *testing.T) {
		t.Parallel()
		for i, addr := range OddAddresses {
			dest, next := h.Inbox(t)
			d := FullDelivery(h.DestType, dest)
			d.MessageID = fmt.Sprintf("0192f0c4-0000-7000-8000-%012d", i)
			d.AIAgentAddress, d.SenderID = addr, addr
			require.NoError(t, h.Deliverer.Deliver(t.Context(), d))
			r := next(t)
			require.Equal(t, addr, r.Attrs["aiAgentAddress"])
			require.Equal(t, addr, r.Attrs["senderId"])
			wire := r.Raw[h.AttrHeader["aiAgentAddress"]]
			if h.DestType == "HTTP_ENDPOINT" {
				require.Equal(t, url.PathEscape(addr), wire, "HTTP values are path-escaped")
			} else {
				require.Equal(t, addr, wire, "NATS values are raw UTF-8")
			}
		}
	})

	for _, fc := range h.Failures {
		t.Run("failure: "+fc.Name, func(t *testing.T) {
			t.Parallel()
			d := FullDelivery(h.DestType, fc.Dest(t))
			err := h.Deliverer.Deliver(t.Context(), d)
			require.Error(t, err)
			var e *delivery.Error
			require.ErrorAs(t, err, &e, "failures are classified")
			fc.Check(t, e)
		})
	}

	t.Run("failure: hang beyond the deadline", func(t *testing.T) {
		t.Parallel()
		dest, _ := h.Hanging(t)
		d := FullDelivery(h.DestType, dest)
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		err := h.Deliverer.Deliver(ctx, d)
		var e *delivery.Error
		require.ErrorAs(t, err, &e)
		require.False(t, e.Permanent)
		require.True(t, e.CountsForBreaker)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})

	t.Run("cancellation returns promptly and is not a failure", func(t *testing.T) {
		t.Parallel()
		dest, arrived := h.Hanging(t)
		d := FullDelivery(h.DestType, dest)
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- h.Deliverer.Deliver(ctx, d) }()
		select {
		case <-arrived:
		case err := <-errc:
			t.Fatalf("Deliver returned before the message arrived: %v", err)
		}
		cancel()
		select {
		case err := <-errc:
			require.ErrorIs(t, err, context.Canceled)
			var e *delivery.Error
			require.False(t, errors.As(err, &e), "cancellation is not a classified failure: %v", err)
		case <-time.After(10 * time.Second): // the harness timeouts are a minute
			t.Fatal("Deliver did not return after cancellation")
		}
	})
}
