// Package deliverytest is the conformance suite of delivery.Deliverer: every
// Deliverer, bare or decorated, must carry the same payload bytes and attributes to
// its inbox (DESIGN §5), classify its failures the same way (*delivery.Error), give
// up at its ctx's deadline as a retryable failure, and return promptly, unclassified,
// when its ctx is cancelled. Run runs it over a Harness: a real inbox (an
// in-process JetStream, an httptest server) and the Deliverer under test.
//
// It is imported by tests only (it starts servers); production code never links it.
package deliverytest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/delivery"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// Received is what an inbox got, decoded into contract attribute names.
type Received struct {
	Body  []byte
	Attrs map[string]string // attribute -> value as the agent reads it (HTTP values unescaped)
	Raw   map[string]string // header name -> value on the wire
}

// FailureCase makes an attempt fail in one way and checks its classification.
type FailureCase struct {
	Name  string
	Dest  func(t *testing.T) string // a destination failing this way
	Check func(t *testing.T, e *delivery.Error)
}

// Harness is one transport's real inbox, ways to make it fail, and the Deliverer
// under test. NATS and HTTP return one with the bare transport as Deliverer; wrap
// it (delivery.ByType, delivery.Chain) before Run to test a decorated one.
type Harness struct {
	Deliverer delivery.Deliverer
	DestType  string // mapping.TypeNATSSubject or mapping.TypeHTTPEndpoint
	// Inbox returns a fresh working destination and a function waiting for the
	// next message it receives.
	Inbox func(t *testing.T) (dest string, next func(t *testing.T) Received)
	// Hanging returns a destination that takes the message and never answers, and
	// a channel closed once the message arrived there.
	Hanging  func(t *testing.T) (dest string, arrived <-chan struct{})
	Failures []FailureCase
	// AttrHeader maps a contract attribute to its header name on this transport.
	AttrHeader map[string]string
}

// AttrNames are the contract attribute names, as the agent sees them (DESIGN §5).
var AttrNames = []string{"messageId", "aiAgentAddress", "timestampPublished", "contentType",
	"senderId", "correlationId", "senderProvidedMessageId", "traceparent"}

// NATS starts an in-process JetStream with an inbox stream capturing agents.> and
// returns a Harness delivering with delivery.NewNATS. Everything stops when t ends.
func NATS(t *testing.T) *Harness {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	stream, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name:       "INBOXES",
		Subjects:   []string{"agents.>"},
		Duplicates: time.Minute,
	})
	require.NoError(t, err)
	var seq atomic.Int64
	// On NATS every attribute travels in the header of its own name (DESIGN §5).
	attrHeader := make(map[string]string, len(AttrNames))
	for _, a := range AttrNames {
		attrHeader[a] = a
	}
	h := &Harness{
		Deliverer:  delivery.NewNATS(js),
		DestType:   "NATS_SUBJECT",
		AttrHeader: attrHeader,
	}
	h.Inbox = func(t *testing.T) (string, func(*testing.T) Received) {
		subject := fmt.Sprintf("agents.conformance.%d", seq.Add(1))
		return subject, func(t *testing.T) Received {
			m, err := stream.GetLastMsgForSubject(t.Context(), subject)
			require.NoError(t, err)
			r := Received{Body: m.Data, Attrs: map[string]string{}, Raw: map[string]string{}}
			for k, v := range m.Header {
				r.Raw[k] = v[0]
			}
			for _, a := range AttrNames {
				if v := m.Header.Get(h.AttrHeader[a]); v != "" {
					r.Attrs[a] = v
				}
			}
			require.Equal(t, r.Attrs["messageId"], m.Header.Get(nats.MsgIdHdr))
			return r
		}
	}
	h.Hanging = func(t *testing.T) (string, <-chan struct{}) {
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
	h.Failures = []FailureCase{
		{
			Name: "no stream captures the subject",
			Dest: func(*testing.T) string { return "nowhere.inbox" },
			Check: func(t *testing.T, e *delivery.Error) {
				require.False(t, e.Permanent)
				require.True(t, e.CountsForBreaker)
				require.ErrorIs(t, e, jetstream.ErrNoStreamResponse)
			},
		},
	}
	return h
}

// HTTP starts an httptest server with working, hanging and failing endpoints and
// returns a Harness delivering with delivery.NewHTTP (private networks allowed, a
// minute's timeout). Everything stops when t ends.
func HTTP(t *testing.T) *Harness {
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

	d, err := delivery.NewHTTP(delivery.HTTPConfig{AllowPrivateNetworks: true, Timeout: time.Minute})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	h := &Harness{
		Deliverer: d,
		DestType:  "HTTP_ENDPOINT",
		AttrHeader: map[string]string{
			"messageId": "X-Message-Id", "aiAgentAddress": "X-Ai-Agent-Address",
			"timestampPublished": "X-Timestamp-Published", "contentType": "Content-Type",
			"senderId": "X-Sender-Id", "correlationId": "X-Correlation-Id",
			"senderProvidedMessageId": "X-Sender-Provided-Message-Id", "traceparent": "traceparent",
		},
	}
	h.Inbox = func(t *testing.T) (string, func(*testing.T) Received) {
		path := fmt.Sprintf("/inbox/%d", seq.Add(1))
		ch := make(chan request, 1)
		unlock := lock()
		inboxes[path] = ch
		unlock()
		return srv.URL + path, func(t *testing.T) Received {
			var req request
			select {
			case req = <-ch:
			case <-time.After(10 * time.Second):
				t.Fatal("nothing arrived at the inbox")
			}
			require.Equal(t, http.MethodPost, req.method)
			r := Received{Body: req.body, Attrs: map[string]string{}, Raw: map[string]string{}}
			for k, v := range req.header {
				r.Raw[k] = v[0]
			}
			for _, a := range AttrNames {
				if v := req.header.Get(h.AttrHeader[a]); v != "" {
					if a != "contentType" {
						var err error
						v, err = url.PathUnescape(v)
						require.NoError(t, err)
					}
					r.Attrs[a] = v
				}
			}
			id := req.header.Get("X-Message-Id")
			require.Equal(t, id, req.header.Get("Idempotency-Key"))
			require.Equal(t, id, req.header.Get("webhook-id"))
			return r
		}
	}
	h.Hanging = func(t *testing.T) (string, <-chan struct{}) {
		path := fmt.Sprintf("/hang/%d", seq.Add(1))
		ch := make(chan struct{})
		unlock := lock()
		hangs[path] = ch
		unlock()
		return srv.URL + path, ch
	}
	status := func(code int, permanent bool, reason string, retryAfter func(time.Duration) bool) func(*testing.T, *delivery.Error) {
		return func(t *testing.T, e *delivery.Error) {
			require.Equal(t, code, e.StatusCode)
			require.Equal(t, permanent, e.Permanent)
			require.Equal(t, reason, e.Reason)
			require.True(t, e.CountsForBreaker)
			require.True(t, retryAfter(e.RetryAfter), "RetryAfter %v", e.RetryAfter)
			var se *delivery.StatusError
			require.ErrorAs(t, e, &se)
		}
	}
	none := func(d time.Duration) bool { return d == 0 }
	path := func(p string) func(*testing.T) string { return func(*testing.T) string { return srv.URL + p } }
	h.Failures = []FailureCase{
		{Name: "500", Dest: path("/500"), Check: func(t *testing.T, e *delivery.Error) {
			status(500, false, "", none)(t, e)
			require.Contains(t, e.Error(), "boom")
			require.NotContains(t, e.Error(), "\x00", "error text is stored in Postgres")
		}},
		{Name: "410 gone", Dest: path("/410"), Check: status(410, true, delivery.ReasonDestinationGone, none)},
		{Name: "429 with Retry-After seconds", Dest: path("/429"),
			Check: status(429, false, "", func(d time.Duration) bool { return d == 7*time.Second })},
		{Name: "503 with Retry-After date", Dest: path("/503"),
			Check: status(503, false, "", func(d time.Duration) bool { return d > 50*time.Minute && d <= time.Hour })},
		{Name: "302 not followed", Dest: path("/302"), Check: func(t *testing.T, e *delivery.Error) {
			status(302, false, "", none)(t, e)
			require.Contains(t, e.Error(), "redirects are not followed: /elsewhere")
			require.Zero(t, followed.Load(), "the redirect was followed")
		}},
		{Name: "404", Dest: path("/nothing-here"), Check: status(404, false, "", none)},
		{Name: "connection refused", Dest: func(t *testing.T) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			addr := l.Addr().String()
			require.NoError(t, l.Close())
			return "http://" + addr + "/inbox"
		}, Check: func(t *testing.T, e *delivery.Error) {
			require.False(t, e.Permanent)
			require.True(t, e.CountsForBreaker)
			require.Zero(t, e.StatusCode)
		}},
	}
	return h
}
