package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// The conformance suite: every Deliverer must carry the same payload bytes and the
// same attributes to its inbox, and classify its failures the same way. Each
// harness wraps one Deliverer and a real inbox it can read back.

// received is what an inbox got, decoded into contract attribute names.
type received struct {
	body  []byte
	attrs map[string]string // attribute -> value as the agent reads it (HTTP values unescaped)
	raw   map[string]string // header name -> value on the wire
}

// failureCase makes an attempt fail in one way and checks the classification.
type failureCase struct {
	name  string
	dest  func(t *testing.T) string // a destination failing this way
	check func(t *testing.T, e *Error)
}

type harness struct {
	deliverer Deliverer
	destType  string
	// inbox returns a fresh working destination and a function waiting for the
	// next message it receives.
	inbox func(t *testing.T) (dest string, next func(t *testing.T) received)
	// hanging returns a destination that takes the message and never answers, and
	// a channel closed once the message arrived there.
	hanging  func(t *testing.T) (dest string, arrived <-chan struct{})
	failures []failureCase
	// attrHeader maps a contract attribute to its header name on this transport.
	attrHeader map[string]string
}

var harnesses = []struct {
	name string
	new  func(t *testing.T) *harness
}{
	{"nats", newNATSHarness},
	{"http", newHTTPHarness},
}

// Contract attribute names, as the agent sees them.
var attrNames = []string{"messageId", "aiAgentAddress", "timestampPublished", "contentType",
	"senderId", "correlationId", "senderProvidedMessageId", "traceparent"}

func newNATSHarness(t *testing.T) *harness {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	ctx := t.Context()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       "INBOXES",
		Subjects:   []string{"agents.>"},
		Duplicates: time.Minute,
	})
	require.NoError(t, err)
	var seq atomic.Int64
	h := &harness{
		deliverer: NewNATS(js),
		destType:  "NATS_SUBJECT",
		attrHeader: map[string]string{
			"messageId": "messageId", "aiAgentAddress": "aiAgentAddress",
			"timestampPublished": "timestampPublished", "contentType": "contentType",
			"senderId": "senderId", "correlationId": "correlationId",
			"senderProvidedMessageId": "senderProvidedMessageId", "traceparent": "traceparent",
		},
	}
	h.inbox = func(t *testing.T) (string, func(*testing.T) received) {
		subject := fmt.Sprintf("agents.conformance.%d", seq.Add(1))
		return subject, func(t *testing.T) received {
			m, err := stream.GetLastMsgForSubject(t.Context(), subject)
			require.NoError(t, err)
			r := received{body: m.Data, attrs: map[string]string{}, raw: map[string]string{}}
			for k, v := range m.Header {
				r.raw[k] = v[0]
			}
			for _, a := range attrNames {
				if v := m.Header.Get(h.attrHeader[a]); v != "" {
					r.attrs[a] = v
				}
			}
			require.Equal(t, r.attrs["messageId"], m.Header.Get(nats.MsgIdHdr))
			return r
		}
	}
	h.hanging = func(t *testing.T) (string, <-chan struct{}) {
		// A plain subscriber outside any stream answers nothing: the publish
		// request has a responder, so it waits for a PubAck that never comes.
		subject := fmt.Sprintf("hang.%d", seq.Add(1))
		arrived := make(chan struct{})
		var once atomic.Bool
		sub, err := nc.Subscribe(subject, func(*nats.Msg) {
			if once.CompareAndSwap(false, true) {
				close(arrived)
			}
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		require.NoError(t, nc.Flush())
		return subject, arrived
	}
	h.failures = []failureCase{
		{
			name: "no stream captures the subject",
			dest: func(*testing.T) string { return "nowhere.inbox" },
			check: func(t *testing.T, e *Error) {
				require.False(t, e.Permanent)
				require.True(t, e.CountsForBreaker)
				require.ErrorIs(t, e, jetstream.ErrNoStreamResponse)
			},
		},
	}
	return h
}

func newHTTPHarness(t *testing.T) *harness {
	type request struct {
		method string
		body   []byte
		header http.Header
	}
	var seq atomic.Int64
	var followed atomic.Int64 // requests that reached the redirect's target
	inboxes := make(map[string]chan request)
	hangs := make(map[string]chan struct{})
	failing := map[string]func(http.ResponseWriter){
		"/500": func(w http.ResponseWriter) { http.Error(w, "boom\x00 \xff", 500) },
		"/410": func(w http.ResponseWriter) { w.WriteHeader(410) },
		"/429": func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
		},
		"/503": func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
			w.WriteHeader(503)
		},
		"/302": func(w http.ResponseWriter) {
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(302)
		},
		// Observed here, asserted by the test goroutine (require must not run
		// in a handler's goroutine: FailNow there does not stop the test).
		"/elsewhere": func(w http.ResponseWriter) { followed.Add(1); w.WriteHeader(http.StatusNoContent) },
	}
	testDone := t.Context().Done()
	var mu sync.Mutex // guards inboxes and hangs, which subtests add to
	lock := func() func() { mu.Lock(); return mu.Unlock }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, ok := failing[r.URL.Path]; ok {
			f(w)
			return
		}
		unlock := lock()
		in, hang := inboxes[r.URL.Path], hangs[r.URL.Path]
		unlock()
		switch {
		case in != nil:
			body, _ := io.ReadAll(r.Body)
			in <- request{method: r.Method, body: body, header: r.Header.Clone()}
			w.WriteHeader(http.StatusNoContent)
		case hang != nil:
			// Read the body first: the server notices a client going away
			// (and cancels r.Context) only once the body is consumed.
			_, _ = io.Copy(io.Discard, r.Body)
			close(hang)
			select {
			case <-r.Context().Done():
			case <-testDone:
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)

	d, err := NewHTTP(HTTPConfig{AllowPrivateNetworks: true, Timeout: time.Minute})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	h := &harness{
		deliverer: d,
		destType:  "HTTP_ENDPOINT",
		attrHeader: map[string]string{
			"messageId": "X-Message-Id", "aiAgentAddress": "X-Ai-Agent-Address",
			"timestampPublished": "X-Timestamp-Published", "contentType": "Content-Type",
			"senderId": "X-Sender-Id", "correlationId": "X-Correlation-Id",
			"senderProvidedMessageId": "X-Sender-Provided-Message-Id", "traceparent": "traceparent",
		},
	}
	h.inbox = func(t *testing.T) (string, func(*testing.T) received) {
		path := fmt.Sprintf("/inbox/%d", seq.Add(1))
		ch := make(chan request, 1)
		unlock := lock()
		inboxes[path] = ch
		unlock()
		return srv.URL + path, func(t *testing.T) received {
			var req request
			select {
			case req = <-ch:
			case <-time.After(10 * time.Second):
				t.Fatal("nothing arrived at the inbox")
			}
			require.Equal(t, http.MethodPost, req.method)
			r := received{body: req.body, attrs: map[string]string{}, raw: map[string]string{}}
			for k, v := range req.header {
				r.raw[k] = v[0]
			}
			for _, a := range attrNames {
				if v := req.header.Get(h.attrHeader[a]); v != "" {
					if a != "contentType" {
						var err error
						v, err = url.PathUnescape(v)
						require.NoError(t, err)
					}
					r.attrs[a] = v
				}
			}
			id := req.header.Get("X-Message-Id")
			require.Equal(t, id, req.header.Get("Idempotency-Key"))
			require.Equal(t, id, req.header.Get("webhook-id"))
			return r
		}
	}
	h.hanging = func(t *testing.T) (string, <-chan struct{}) {
		path := fmt.Sprintf("/hang/%d", seq.Add(1))
		ch := make(chan struct{})
		unlock := lock()
		hangs[path] = ch
		unlock()
		return srv.URL + path, ch
	}
	status := func(code int, permanent bool, reason string, retryAfter func(time.Duration) bool) func(*testing.T, *Error) {
		return func(t *testing.T, e *Error) {
			require.Equal(t, code, e.StatusCode)
			require.Equal(t, permanent, e.Permanent)
			require.Equal(t, reason, e.Reason)
			require.True(t, e.CountsForBreaker)
			require.True(t, retryAfter(e.RetryAfter), "RetryAfter %v", e.RetryAfter)
			var se *StatusError
			require.ErrorAs(t, e, &se)
		}
	}
	none := func(d time.Duration) bool { return d == 0 }
	path := func(p string) func(*testing.T) string { return func(*testing.T) string { return srv.URL + p } }
	h.failures = []failureCase{
		{name: "500", dest: path("/500"), check: func(t *testing.T, e *Error) {
			status(500, false, "", none)(t, e)
			require.Contains(t, e.Error(), "boom")
			require.NotContains(t, e.Error(), "\x00", "error text is stored in Postgres")
		}},
		{name: "410 gone", dest: path("/410"), check: status(410, true, ReasonDestinationGone, none)},
		{name: "429 with Retry-After seconds", dest: path("/429"),
			check: status(429, false, "", func(d time.Duration) bool { return d == 7*time.Second })},
		{name: "503 with Retry-After date", dest: path("/503"),
			check: status(503, false, "", func(d time.Duration) bool { return d > 50*time.Minute && d <= time.Hour })},
		{name: "302 not followed", dest: path("/302"), check: func(t *testing.T, e *Error) {
			status(302, false, "", none)(t, e)
			require.Contains(t, e.Error(), "redirects are not followed: /elsewhere")
			require.Zero(t, followed.Load(), "the redirect was followed")
		}},
		{name: "404", dest: path("/nothing-here"), check: status(404, false, "", none)},
		{name: "connection refused", dest: func(t *testing.T) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			addr := l.Addr().String()
			require.NoError(t, l.Close())
			return "http://" + addr + "/inbox"
		}, check: func(t *testing.T, e *Error) {
			require.False(t, e.Permanent)
			require.True(t, e.CountsForBreaker)
			require.Zero(t, e.StatusCode)
		}},
	}
	return h
}

// oddAddresses must survive every hop unchanged (DESIGN §2).
var oddAddresses = []string{
	"agent-sales@example.com",
	"agent/with/slashes?and#hash",
	"100%-sure%20not-decoded",
	"агент@пример.рф",
	"a+b:c;d,e=f&g$h'i(j)k*l!m~n",
	"emoji-🤖@example.com",
}

const oddPayload = `{"big":123456789012345678901234567890,"dec":0.100000000000000000000000001,` +
	`"nul":"a\u0000b","uni":"héllo 🌍 \u2028 \ud83d\ude00","esc":"\"\\/","nested":{"a":[1,2.50,-0e0]},"empty":{}}`

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, hc := range harnesses {
		t.Run(hc.name, func(t *testing.T) {
			t.Parallel()
			h := hc.new(t)

			t.Run("payload bytes and every attribute arrive", func(t *testing.T) {
				t.Parallel()
				dest, next := h.inbox(t)
				d := fullDelivery()
				d.DestType, d.DestName, d.Payload = h.destType, dest, []byte(oddPayload)
				require.NoError(t, h.deliverer.Deliver(t.Context(), d))
				r := next(t)
				require.Equal(t, oddPayload, string(r.body))
				require.Equal(t, map[string]string{
					"messageId":               d.MessageID,
					"aiAgentAddress":          d.AIAgentAddress,
					"timestampPublished":      "2026-11-28T15:04:05.123Z",
					"contentType":             "application/json",
					"senderId":                d.SenderID,
					"correlationId":           d.CorrelationID,
					"senderProvidedMessageId": d.SenderMessageID,
					"traceparent":             d.Traceparent,
				}, r.attrs)
			})

			t.Run("absent attributes are omitted", func(t *testing.T) {
				t.Parallel()
				dest, next := h.inbox(t)
				d := &Delivery{MessageID: "0192f0c4-0000-7001-8000-000000000001", AIAgentAddress: "a@b",
					DestType: h.destType, DestName: dest, Payload: []byte(`{}`), AcceptedAt: accepted}
				require.NoError(t, h.deliverer.Deliver(t.Context(), d))
				r := next(t)
				require.Equal(t, "{}", string(r.body))
				require.Equal(t, map[string]string{
					"messageId":          d.MessageID,
					"aiAgentAddress":     "a@b",
					"timestampPublished": "2026-11-28T15:04:05.123Z",
					"contentType":        "application/json",
				}, r.attrs)
				for _, a := range []string{"senderId", "correlationId", "senderProvidedMessageId", "traceparent"} {
					for name := range r.raw {
						require.NotEqual(t, strings.ToLower(h.attrHeader[a]), strings.ToLower(name), "absent %s must be omitted", a)
					}
				}
			})

			t.Run("odd addresses survive", func(t *testing.T) {
				t.Parallel()
				for i, addr := range oddAddresses {
					dest, next := h.inbox(t)
					d := fullDelivery()
					d.MessageID = fmt.Sprintf("0192f0c4-0000-7000-8000-%012d", i)
					d.DestType, d.DestName, d.AIAgentAddress, d.SenderID = h.destType, dest, addr, addr
					require.NoError(t, h.deliverer.Deliver(t.Context(), d))
					r := next(t)
					require.Equal(t, addr, r.attrs["aiAgentAddress"])
					require.Equal(t, addr, r.attrs["senderId"])
					wire := r.raw[h.attrHeader["aiAgentAddress"]]
					if h.destType == "HTTP_ENDPOINT" {
						require.Equal(t, url.PathEscape(addr), wire, "HTTP values are path-escaped")
					} else {
						require.Equal(t, addr, wire, "NATS values are raw UTF-8")
					}
				}
			})

			for _, fc := range h.failures {
				t.Run("failure: "+fc.name, func(t *testing.T) {
					t.Parallel()
					d := fullDelivery()
					d.DestType, d.DestName = h.destType, fc.dest(t)
					err := h.deliverer.Deliver(t.Context(), d)
					require.Error(t, err)
					var e *Error
					require.ErrorAs(t, err, &e, "failures are classified")
					fc.check(t, e)
				})
			}

			t.Run("failure: hang beyond the deadline", func(t *testing.T) {
				t.Parallel()
				dest, _ := h.hanging(t)
				d := fullDelivery()
				d.DestType, d.DestName = h.destType, dest
				ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
				defer cancel()
				err := h.deliverer.Deliver(ctx, d)
				var e *Error
				require.ErrorAs(t, err, &e)
				require.False(t, e.Permanent)
				require.True(t, e.CountsForBreaker)
				require.ErrorIs(t, err, context.DeadlineExceeded)
			})

			t.Run("cancellation returns promptly and is not a failure", func(t *testing.T) {
				t.Parallel()
				dest, arrived := h.hanging(t)
				d := fullDelivery()
				d.DestType, d.DestName = h.destType, dest
				ctx, cancel := context.WithCancel(t.Context())
				errc := make(chan error, 1)
				go func() { errc <- h.deliverer.Deliver(ctx, d) }()
				select {
				case <-arrived:
				case err := <-errc:
					t.Fatalf("Deliver returned before the message arrived: %v", err)
				}
				cancel()
				select {
				case err := <-errc:
					require.ErrorIs(t, err, context.Canceled)
					var e *Error
					require.False(t, errors.As(err, &e), "cancellation is not a classified failure: %v", err)
				case <-time.After(10 * time.Second): // the harness timeouts are a minute
					t.Fatal("Deliver did not return after cancellation")
				}
			})
		})
	}
}
