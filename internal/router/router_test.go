package router_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/apiclient"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/consumer"
	"github.com/msgrouter/msgrouter/internal/router"
	"github.com/msgrouter/msgrouter/internal/router/routertest"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

// agentCAMS is a fake CAMS whose answers and failures tests control: mappings
// can be changed, deleted or made unanswerable mid-test, and it counts requests,
// and lookups per address.
type agentCAMS struct {
	mu       sync.Mutex
	agents   map[string]mapping.Mapping
	lookups  map[string]int
	down     atomic.Bool // answer 503
	requests atomic.Int64
	srv      *httptest.Server
}

func newAgentCAMS(t *testing.T) *agentCAMS {
	f := &agentCAMS{agents: map[string]mapping.Mapping{}, lookups: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		addr, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/v1/agent-inboxes/"))
		if err != nil {
			http.Error(w, "bad path", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.lookups[addr]++
		m, ok := f.agents[addr]
		f.mu.Unlock()
		if f.down.Load() {
			http.Error(w, `{"errorCode":"UNAVAILABLE","message":"down"}`, http.StatusServiceUnavailable)
			return
		}
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"errorCode":"NOT_FOUND","message":"unknown agent"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *agentCAMS) set(addr, typ, inbox, status, policy string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now().UTC()
	f.agents[addr] = mapping.Mapping{AIAgentAddress: addr, InboxDestinationType: typ, InboxName: inbox, Status: status,
		InactivePolicy: policy, RegistrationTimestamp: now, LastUpdatedTimestamp: now}
}

func (f *agentCAMS) remove(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.agents, addr)
}

func (f *agentCAMS) lookupsOf(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups[addr]
}

// fakeCAMS is the agentCAMS of most tests: their agents have no inactive policy.
type fakeCAMS struct{ *agentCAMS }

func newFakeCAMS(t *testing.T) *fakeCAMS { return &fakeCAMS{newAgentCAMS(t)} }

func (f *fakeCAMS) set(addr, typ, inbox, status string) {
	f.agentCAMS.set(addr, typ, inbox, status, "")
}

type env struct {
	opts     router.Options
	t        *testing.T
	nats     *natstest.Server
	js       jetstream.JetStream
	nc       *nats.Conn
	cams     *fakeCAMS
	adminURL string
	inbox    jetstream.Stream
	cancel   context.CancelFunc
	done     <-chan error
	cfg      config.Router
	reg      *prometheus.Registry
}

// setup runs a router against a fresh database, an in-process JetStream server and
// a fake CAMS. Agent inboxes are subjects under "inbox." captured by stream INBOX.
func setup(t *testing.T, overrides map[string]string, opts ...router.Options) *env {
	t.Helper()
	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	fc := newFakeCAMS(t)
	vars := map[string]string{
		"NATS_URL":                        ns.URL,
		"DATABASE_URL":                    pgtest.NewURL(t),
		"CAMS_API_URL":                    fc.srv.URL,
		"ROUTER_ADDR":                     "127.0.0.1:0",
		"DELIVERY_ALLOW_PRIVATE_NETWORKS": "true",
		"DELIVERY_BACKOFF_INITIAL":        "20ms",
		"DELIVERY_BACKOFF_MAX":            "200ms",
		"DELIVERY_TIMEOUT":                "2s",
		"BREAKER_OPEN_TIMEOUT":            "300ms",
		"CAMS_CACHE_TTL":                  "0s",
		"SHUTDOWN_TIMEOUT":                "5s",
	}
	for k, v := range overrides {
		vars[k] = v
	}
	cfg, err := config.LoadRouter(config.FromMap(vars))
	require.NoError(t, err)
	ctx := context.Background()
	inbox, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "INBOX", Subjects: []string{"inbox.>"}})
	require.NoError(t, err)
	e := &env{t: t, nats: ns, js: js, nc: nc, cams: fc, inbox: inbox, cfg: cfg, done: make(chan error, 1)}
	if len(opts) > 0 {
		e.opts = opts[0]
	}
	e.start()
	return e
}

func (e *env) start() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.reg = prometheus.NewRegistry()
	o := e.opts
	o.Registry = e.reg
	addr, done := routertest.Start(ctx, e.t, e.cfg, o, 30*time.Second)
	e.adminURL, e.done = "http://"+addr, done
	e.t.Cleanup(e.stop)
}

// stop shuts the router down gracefully and checks it returned cleanly.
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		require.NoError(e.t, err)
	case <-time.After(30 * time.Second):
		e.t.Fatal("router did not stop within 30s")
	}
}

// publish sends a message body straight to the stream, as a direct producer does.
func (e *env) publish(body string, msgID string) {
	e.t.Helper()
	m := nats.NewMsg(stream.Subject)
	m.Data = []byte(body)
	if msgID != "" {
		m.Header.Set(nats.MsgIdHdr, msgID)
	}
	_, err := e.js.PublishMsg(context.Background(), m)
	require.NoError(e.t, err)
}

// waitStreamSettled waits until the router's consumer has nothing pending and
// nothing waiting for an ack: every message was acked or terminated.
func (e *env) waitStreamSettled() {
	e.t.Helper()
	cons, err := e.js.Consumer(context.Background(), stream.Name, stream.ConsumerName)
	require.NoError(e.t, err)
	require.Eventually(e.t, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}, 10*time.Second, 20*time.Millisecond)
}

// listMessages asks the admin API for GET /v1/messages?query; an empty page when
// it did not answer.
func (e *env) listMessages(query string) apiclient.MessagePage {
	var page apiclient.MessagePage
	resp, err := http.Get(e.adminURL + "/v1/messages?" + query)
	if err != nil {
		return page
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&page)
	return page
}

// send publishes one message with an empty payload to address and returns its id.
func (e *env) send(address string) string {
	e.t.Helper()
	return e.publishN(address, 1)[0]
}

// publishN publishes n messages with an empty payload to address and returns
// their ids.
func (e *env) publishN(address string, n int) []string {
	e.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
		e.publish(body(address, `{}`), ids[i])
	}
	return ids
}

func (e *env) get(id string) (int, apiclient.Message) {
	e.t.Helper()
	resp, err := http.Get(e.adminURL + "/v1/messages/" + id)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	var v apiclient.Message
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// waitStatus waits until the message is in status and returns its view.
// rejection is a message the router must reject: its body and the reason.
type rejection struct{ body, reason string }

// publishEach publishes each case's body under a fresh messageId and returns the
// ids by case name.
func (e *env) publishEach(cases map[string]rejection) map[string]string {
	ids := make(map[string]string, len(cases))
	for name, c := range cases {
		ids[name] = uuid.NewString()
		e.publish(c.body, ids[name])
	}
	return ids
}

// waitRejected waits until each case's message (ids by case name, from
// publishEach) is REJECTED with the case's reason, and returns the messages by
// case name.
func (e *env) waitRejected(cases map[string]rejection, ids map[string]string) map[string]apiclient.Message {
	e.t.Helper()
	got := make(map[string]apiclient.Message, len(cases))
	for name, c := range cases {
		v := e.waitStatus(ids[name], "REJECTED")
		require.Equal(e.t, c.reason, v.Reason, name)
		got[name] = v
	}
	return got
}

func (e *env) waitStatus(id, status string) apiclient.Message {
	e.t.Helper()
	var last apiclient.Message
	lastCode := 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		lastCode, last = e.get(id)
		if lastCode == http.StatusOK && last.Status == status {
			return last
		}
		if time.Now().After(deadline) {
			// Built after the wait, so it names the last state seen.
			require.FailNowf(e.t, "status not reached", "message %s never became %s (last: HTTP %d, %+v)", id, status, lastCode, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inboxMsgs returns what arrived on an inbox subject so far.
func (e *env) inboxMsgs(subject string) []jetstream.Msg {
	e.t.Helper()
	ctx := context.Background()
	c, err := e.inbox.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	require.NoError(e.t, err)
	var out []jetstream.Msg
	for {
		batch, err := c.FetchNoWait(100)
		require.NoError(e.t, err)
		n := 0
		for m := range batch.Messages() {
			out = append(out, m)
			n++
		}
		if n == 0 {
			return out
		}
	}
}

func body(addr, payload string) string {
	return fmt.Sprintf(`{"aiAgentAddress":%q,"payload":%s}`, addr, payload)
}

func TestDeliversToNATSInbox(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	addr := "agent-sales@example.com/é+%"
	e.cams.set(addr, mapping.TypeNATSSubject, "inbox.sales", mapping.StatusActive)
	id := uuid.NewString()
	payload := `{"big":12345678901234567890123,"dec":0.1000000000000000055511151231257827,"s":"\u0000é"}`
	e.publish(fmt.Sprintf(`{"aiAgentAddress":%q,"payload":%s,"senderMetadata":{"serviceName":"crm","correlationId":"c-1"}}`, addr, payload), id)

	v := e.waitStatus(id, "DELIVERED")
	require.Equal(t, 1, v.Attempts)
	require.Len(t, v.History, 1)
	require.Equal(t, "DELIVERED", v.History[0].Outcome)
	require.Equal(t, "NATS_SUBJECT", v.Destination.Type)

	msgs := e.inboxMsgs("inbox.sales")
	require.Len(t, msgs, 1)
	require.Equal(t, payload, string(msgs[0].Data()))
	h := msgs[0].Headers()
	require.Equal(t, id, h.Get("messageId"))
	require.Equal(t, id, h.Get("Nats-Msg-Id"))
	require.Equal(t, addr, h.Get("aiAgentAddress"))
	require.Equal(t, "crm", h.Get("senderId"))
	require.Equal(t, "c-1", h.Get("correlationId"))
	require.Empty(t, h.Values("senderProvidedMessageId"))
	_, err := time.Parse("2006-01-02T15:04:05.000Z", h.Get("timestampPublished"))
	require.NoError(t, err)
}

func TestDeliversToHTTPInbox(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	got := make(chan *http.Request, 10)
	bodies := make(chan string, 10)
	inbox := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- string(b)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer inbox.Close()
	e.cams.set("agent-http", mapping.TypeHTTPEndpoint, inbox.URL+"/in", mapping.StatusActive)
	id := uuid.NewString()
	e.publish(body("agent-http", `{"n":1}`), id)
	e.waitStatus(id, "DELIVERED")
	r := <-got
	require.Equal(t, `{"n":1}`, <-bodies)
	require.Equal(t, id, r.Header.Get("X-Message-Id"))
	require.Equal(t, id, r.Header.Get("Idempotency-Key"))
	require.Equal(t, id, r.Header.Get("webhook-id"))
	require.Equal(t, "agent-http", r.Header.Get("X-Ai-Agent-Address"))
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
}

func TestRejections(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	e.cams.set("inactive", mapping.TypeNATSSubject, "inbox.x", mapping.StatusInactive)
	e.cams.set("broken", mapping.TypeNATSSubject, "inbox.*", mapping.StatusActive)
	cases := map[string]rejection{
		"unknown":  {body("nobody", `{}`), "AGENT_NOT_FOUND"},
		"inactive": {body("inactive", `{}`), "AGENT_INACTIVE"},
		"config":   {body("broken", `{}`), "CONFIG_ERROR"},
		"invalid":  {`{"aiAgentAddress":"x","payload":[1]}`, "INVALID_MESSAGE"},
		"garbage":  {`not json at all`, "INVALID_MESSAGE"},
	}
	ids := e.publishEach(cases)
	for name, v := range e.waitRejected(cases, ids) {
		require.Zero(t, v.Attempts, name)
	}
	_, v := e.get(ids["garbage"])
	require.NotEmpty(t, v.RawMessageBase64, "raw bytes of a poison message are kept for inspection")

	// Poison messages are terminated, not redelivered forever.
	e.waitStreamSettled()
}

func TestDirectProducerIDs(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	e.cams.set("a", mapping.TypeNATSSubject, "inbox.a", mapping.StatusActive)
	// A Nats-Msg-Id that is not a UUID is hashed into one; the same header twice
	// (beyond JetStream's dedupe, here: a second stream message) is one message.
	e.publish(body("a", `{"k":1}`), "order-17")
	e.publish(`{"aiAgentAddress":"a","payload":{"k":2},"senderMetadata":{"serviceName":"s","senderProvidedMessageId":"m-1"}}`, "")
	e.publish(body("a", `{"k":3}`), "")
	require.Eventually(t, func() bool { return len(e.inboxMsgs("inbox.a")) == 3 }, 20*time.Second, 20*time.Millisecond)
	for _, m := range e.inboxMsgs("inbox.a") {
		id := m.Headers().Get("messageId")
		_, err := uuid.Parse(id)
		require.NoError(t, err)
		e.waitStatus(id, "DELIVERED")
	}
}

// inboxFailing is an agent's HTTP inbox answering status to each request for which
// failing() is true, 200 to the others; closed when t ends.
func inboxFailing(t *testing.T, status int, failing func() bool) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing() {
			w.WriteHeader(status)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRetriesThenDelivers(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	var calls atomic.Int64
	inbox := inboxFailing(t, http.StatusInternalServerError, func() bool { return calls.Add(1) <= 2 })
	e.cams.set("flaky", mapping.TypeHTTPEndpoint, inbox.URL, mapping.StatusActive)
	id := e.send("flaky")
	v := e.waitStatus(id, "DELIVERED")
	require.Equal(t, 3, v.Attempts)
	require.Len(t, v.History, 3)
	require.Equal(t, "FAILED", v.History[0].Outcome)
	require.Equal(t, "DELIVERED", v.History[2].Outcome)
}

func TestDeadLetterAndReplay(t *testing.T) {
	t.Parallel()
	e := setup(t, map[string]string{"DELIVERY_MAX_ATTEMPTS": "3", "BREAKER_FAILURES": "100"})
	var healthy atomic.Bool
	inbox := inboxFailing(t, http.StatusBadGateway, func() bool { return !healthy.Load() })
	e.cams.set("dl", mapping.TypeHTTPEndpoint, inbox.URL, mapping.StatusActive)
	id := e.send("dl")
	v := e.waitStatus(id, "DEAD_LETTERED")
	require.Equal(t, "MAX_ATTEMPTS_EXCEEDED", v.Reason)
	require.Equal(t, 3, v.Attempts)
	require.Contains(t, v.LastError, "502")

	// Replaying a message that is not failed is a conflict.
	resp, err := http.Post(e.adminURL+"/v1/messages/"+uuid.NewString()+"/replay", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	healthy.Store(true)
	resp, err = http.Post(e.adminURL+"/v1/messages/"+id+"/replay", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	v = e.waitStatus(id, "DELIVERED")
	require.Equal(t, 1, v.Attempts, "attempts restart after a replay")
	require.Len(t, v.History, 4, "history keeps every attempt ever made")

	resp, err = http.Post(e.adminURL+"/v1/messages/"+id+"/replay", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusConflict, resp.StatusCode)
}

// CAMS down: messages wait in the stream (never rejected), and flow once it is back.
func TestCAMSOutageLosesNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, map[string]string{"BREAKER_FAILURES": "2"})
	e.cams.set("c", mapping.TypeNATSSubject, "inbox.c", mapping.StatusActive)
	e.cams.down.Store(true)
	ids := e.publishN("c", 20)
	// CAMS is asked (and fails) before anything could be routed.
	require.Eventually(t, func() bool { return e.cams.requests.Load() >= 2 }, 10*time.Second, 10*time.Millisecond)
	for _, id := range ids {
		code, _ := e.get(id)
		require.Equal(t, http.StatusNotFound, code, "nothing is taken over while CAMS is down")
	}
	e.cams.down.Store(false)
	for _, id := range ids {
		e.waitStatus(id, "DELIVERED")
	}
	require.Len(t, e.inboxMsgs("inbox.c"), 20)
}

// A router restart mid-flow loses nothing and duplicates nothing it committed.
func TestRestartLosesNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	e.cams.set("r", mapping.TypeNATSSubject, "inbox.r", mapping.StatusActive)
	// The INBOX stream drops copies with a Nats-Msg-Id it has seen, so it would
	// hide duplicate deliveries: count every publish on the subject instead.
	var seenMu sync.Mutex
	seen := map[string]int{}
	sub, err := e.nc.Subscribe("inbox.r", func(m *nats.Msg) {
		seenMu.Lock()
		seen[m.Header.Get("messageId")]++
		seenMu.Unlock()
	})
	require.NoError(t, err)
	defer sub.Unsubscribe() //nolint:errcheck
	require.NoError(t, e.nc.Flush())
	var ids []string
	for i := range 200 {
		id := uuid.NewString()
		ids = append(ids, id)
		e.publish(body("r", fmt.Sprintf(`{"i":%d}`, i)), id)
		if i == 100 {
			e.stop()
			e.start()
		}
	}
	for _, id := range ids {
		e.waitStatus(id, "DELIVERED")
	}
	require.Eventually(t, func() bool {
		seenMu.Lock()
		defer seenMu.Unlock()
		return len(seen) == 200
	}, 10*time.Second, 10*time.Millisecond, "every delivery is seen on the subject")
	seenMu.Lock()
	defer seenMu.Unlock()
	for _, id := range ids {
		require.Equal(t, 1, seen[id], "message %s delivered %d times across a graceful restart", id, seen[id])
	}
}

func TestAdminList(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	for range 5 {
		e.publish(body("nobody", `{}`), uuid.NewString())
	}
	require.Eventually(t, func() bool {
		page := e.listMessages("status=REJECTED&limit=2")
		return len(page.Items) == 2 && page.NextCursor != ""
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(e.listMessages("status=REJECTED").Items) == 5 },
		10*time.Second, 20*time.Millisecond)

	for path, code := range map[string]int{
		"/v1/messages?status=NOPE": http.StatusBadRequest,
		"/v1/messages?limit=0":     http.StatusBadRequest,
		"/v1/messages?cursor=zzz":  http.StatusBadRequest,
		"/v1/messages/not-a-uuid":  http.StatusNotFound,
		"/nope":                    http.StatusNotFound,
	} {
		resp, err := http.Get(e.adminURL + path)
		require.NoError(t, err)
		var eb struct{ ErrorCode, Message string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&eb), path)
		resp.Body.Close()
		require.Equal(t, code, resp.StatusCode, path)
		require.NotEmpty(t, eb.ErrorCode, path)
	}
	resp, err := http.Post(e.adminURL+"/v1/dead-letters/replay", "application/json", strings.NewReader(`{"status":"REJECTED"}`))
	require.NoError(t, err)
	var out struct{ Replayed int }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Equal(t, 5, out.Replayed)
}

// A lost ack after the takeover commit only causes a redelivery, which the takeover
// recognises: one record, one delivery.
func TestLostAckIsHarmless(t *testing.T) {
	t.Parallel()
	var dropped atomic.Int64
	e := setup(t, nil, router.Options{
		AckWait: time.Second,
		WrapHandler: func(h consumer.Handler) consumer.Handler {
			return func(ctx context.Context, msgs []jetstream.Msg) []consumer.Action {
				actions := h(ctx, msgs)
				for i := range actions {
					if actions[i].Verdict == consumer.Ack && dropped.Add(1) <= int64(len(msgs)) {
						actions[i].Verdict = consumer.Skip // committed, but the ack never reaches JetStream
					}
				}
				return actions
			}
		},
	})
	e.cams.set("a", mapping.TypeNATSSubject, "inbox.a", mapping.StatusActive)
	id := e.send("a")
	e.waitStatus(id, "DELIVERED")
	// The message comes back after AckWait and is recognised as already taken over.
	require.Eventually(t, func() bool {
		return gathered(t, e.reg, "msgrouter_router_duplicates_total") >= 1
	}, 10*time.Second, 20*time.Millisecond)
	e.waitStreamSettled()
	require.Len(t, e.inboxMsgs("inbox.a"), 1, "delivered once")
}

// gathered sums the samples of a counter or gauge family.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return total
}

// A stream that is recreated (deleted by an operator, or a NATS server back without
// its store) starts its sequences again at 1: messages identified by stream sequence
// must not collide with the old ones, and the router must pick the new stream up.
func TestRecreatedStreamDoesNotReuseIDs(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	e.cams.set("s", mapping.TypeNATSSubject, "inbox.s", mapping.StatusActive)
	e.publish(body("s", `{"n":1}`), "") // no Nats-Msg-Id, no senderProvidedMessageId
	require.Eventually(t, func() bool { return len(e.inboxMsgs("inbox.s")) == 1 }, 20*time.Second, 20*time.Millisecond)
	first := e.inboxMsgs("inbox.s")[0].Headers().Get("messageId")
	e.waitStatus(first, "DELIVERED")

	require.NoError(t, e.js.DeleteStream(context.Background(), stream.Name))
	// The router notices the stream is gone and creates it (and its consumer) again.
	require.Eventually(t, func() bool {
		_, err := e.js.Stream(context.Background(), stream.Name)
		return err == nil
	}, 20*time.Second, 50*time.Millisecond)
	e.publish(body("s", `{"n":2}`), "") // sequence 1 again
	require.Eventually(t, func() bool { return len(e.inboxMsgs("inbox.s")) == 2 }, 20*time.Second, 20*time.Millisecond)
	second := e.inboxMsgs("inbox.s")[1].Headers().Get("messageId")
	require.NotEqual(t, first, second)
	e.waitStatus(second, "DELIVERED")
}

// A hanging inbox holds only its own lane: messages for other inboxes flow past it,
// and deliveries per destination never exceed DELIVERY_DESTINATION_CONCURRENCY.
func TestSlowInboxDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	e := setup(t, map[string]string{"DELIVERY_DESTINATION_CONCURRENCY": "2", "DELIVERY_TIMEOUT": "30s"})
	release := make(chan struct{})
	var inFlight, maxInFlight atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		w.WriteHeader(http.StatusOK)
	}))
	defer slow.Close()
	defer close(release)
	e.cams.set("slow", mapping.TypeHTTPEndpoint, slow.URL, mapping.StatusActive)
	e.cams.set("fast", mapping.TypeNATSSubject, "inbox.fast", mapping.StatusActive)

	slowIDs := e.publishN("slow", 10)
	require.Eventually(t, func() bool { return inFlight.Load() == 2 }, 10*time.Second, 10*time.Millisecond)
	fastIDs := e.publishN("fast", 20)
	for _, id := range fastIDs {
		e.waitStatus(id, "DELIVERED")
	}
	require.Equal(t, int64(2), maxInFlight.Load(), "at most DELIVERY_DESTINATION_CONCURRENCY in flight to one destination")
	// The hanging inbox's messages wait, none is lost: each is (or becomes, once its
	// takeover batch commits on a loaded machine) PENDING, never terminal.
	for _, id := range slowIDs {
		e.waitStatus(id, "PENDING")
	}
}
