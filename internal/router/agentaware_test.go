package router_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/apiclient"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

func setupAgents(t *testing.T, overrides map[string]string) (*env, *agentCAMS) {
	t.Helper()
	fc := newAgentCAMS(t)
	vars := map[string]string{"CAMS_API_URL": fc.srv.URL, "BREAKER_FAILURES": "1000", "DELIVERY_MAX_ATTEMPTS": "1000"}
	for k, v := range overrides {
		vars[k] = v
	}
	return setup(t, vars), fc
}

// keyed is a message body with an ordering key and/or an expiry.
func keyed(addr, key string, i int, expiresAt time.Time) string {
	md := map[string]string{}
	if key != "" {
		md["orderingKey"] = key
	}
	if !expiresAt.IsZero() {
		md["expiresAt"] = expiresAt.UTC().Format(time.RFC3339Nano)
	}
	b, _ := json.Marshal(map[string]any{"aiAgentAddress": addr, "payload": map[string]any{"k": key, "i": i}, "senderMetadata": md})
	return string(b)
}

// recorder is an HTTP inbox that records when it was last called and can fail.
type recorder struct {
	mu    sync.Mutex
	calls int
	last  time.Time
	fail  atomic.Bool
	srv   *httptest.Server
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.mu.Lock()
		r.calls++
		r.last = time.Now()
		r.mu.Unlock()
		if r.fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) snapshot() (int, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, r.last
}

// waitAttempts waits until the message has made at least n attempts.
func (e *env) waitAttempts(id string, n int) apiclient.Message {
	e.t.Helper()
	var last apiclient.Message
	require.Eventually(e.t, func() bool {
		_, v := e.get(id)
		last = v
		return v.Attempts >= n
	}, 20*time.Second, 10*time.Millisecond, "message %s never made %d attempts (last: %+v)", id, n, last)
	return last
}

// DESIGN §5, issue 8 item 7: a retry follows the agent's current mapping.
func TestRetryFollowsCAMS(t *testing.T) {
	t.Parallel()
	t.Run("deleted", func(t *testing.T) {
		t.Parallel()
		e, fc, _, id := failingAgent(t, nil, "gone", "", 1)
		fc.remove("gone")
		v := e.waitStatus(id, "REJECTED")
		require.Equal(t, "AGENT_NOT_FOUND", v.Reason)
	})
	t.Run("inactive", func(t *testing.T) {
		t.Parallel()
		e, fc, old, id := failingAgent(t, nil, "sleepy", "", 1)
		fc.set("sleepy", mapping.TypeHTTPEndpoint, old.srv.URL, mapping.StatusInactive, "")
		v := e.waitStatus(id, "REJECTED")
		require.Equal(t, "AGENT_INACTIVE", v.Reason)
	})
	t.Run("inactiveHold", func(t *testing.T) {
		t.Parallel()
		e, fc, in, id := failingAgent(t, nil, "napper", mapping.InactivePolicyHold, 1)
		fc.set("napper", mapping.TypeHTTPEndpoint, in.srv.URL, mapping.StatusInactive, mapping.InactivePolicyHold)
		v := e.waitReason(id, "AGENT_INACTIVE")
		require.Equal(t, "PENDING", v.Status)
		held := v.Attempts
		in.fail.Store(false)
		calls, _ := in.snapshot()
		_, v = e.get(id)
		require.Equal(t, held, v.Attempts, "held: no attempts while INACTIVE")
		fc.set("napper", mapping.TypeHTTPEndpoint, in.srv.URL, mapping.StatusActive, mapping.InactivePolicyHold)
		v = e.waitStatus(id, "DELIVERED")
		require.Equal(t, held+1, v.Attempts)
		after, _ := in.snapshot()
		require.Equal(t, calls+1, after, "one attempt after reactivation")
	})
	t.Run("moved", func(t *testing.T) {
		t.Parallel()
		e, fc, old, id := failingAgent(t, nil, "mover", "", 2)
		fc.set("mover", mapping.TypeNATSSubject, "inbox.moved", mapping.StatusActive, "")
		v := e.waitStatus(id, "DELIVERED")
		require.Equal(t, "NATS_SUBJECT", v.Destination.Type)
		require.Equal(t, "inbox.moved", v.Destination.Name)
		msgs := e.inboxMsgs("inbox.moved")
		require.Len(t, msgs, 1)
		require.Equal(t, id, msgs[0].Headers().Get("messageId"))
		// The old inbox saw nothing once the new one had the message: at most an
		// attempt already under way when the mapping changed.
		meta, err := msgs[0].Metadata()
		require.NoError(t, err)
		calls, last := old.snapshot()
		require.True(t, last.Before(meta.Timestamp), "the old inbox was called after the new one received the message")
		require.LessOrEqual(t, calls, v.Attempts, "every call of the old inbox was a recorded attempt")
	})
	t.Run("camsDownLastKnownInbox", func(t *testing.T) {
		t.Parallel()
		e, fc, old, id := failingAgent(t, map[string]string{"BREAKER_OPEN_TIMEOUT": "30s"}, "known", "", 1)
		fc.down.Store(true)
		before := fc.lookupsOf("known")
		old.fail.Store(false)
		v := e.waitStatus(id, "DELIVERED")
		require.Greater(t, fc.lookupsOf("known"), before, "the retry asked CAMS")
		require.Equal(t, old.srv.URL, v.Destination.Name, "CAMS could not answer: the retry went to the last known inbox")
	})
}

// failingAgent starts a router (with overrides), registers address as an ACTIVE
// agent (inactivePolicy policy) whose HTTP inbox fails, publishes one message to it
// and returns once the message has made attempts attempts, with the inbox and the
// messageId.
func failingAgent(t *testing.T, overrides map[string]string, address, policy string, attempts int) (*env, *agentCAMS, *recorder, string) {
	t.Helper()
	e, fc := setupAgents(t, overrides)
	in := newRecorder(t)
	in.fail.Store(true)
	fc.set(address, mapping.TypeHTTPEndpoint, in.srv.URL, mapping.StatusActive, policy)
	id := e.send(address)
	e.waitAttempts(id, attempts)
	return e, fc, in, id
}

type orderLog struct {
	mu       sync.Mutex
	got      map[string][]int // key → payload indexes answered 2xx, in order
	inflight map[string]int
	overlap  atomic.Int64 // deliveries of one key that overlapped
}

// orderedInbox answers 500 at random (failRate) and records, per key, the order in
// which it accepted messages and whether two of one key were ever in flight at once.
func orderedInbox(t *testing.T, failRate float64, failIf func(key string, i int) bool) (*httptest.Server, *orderLog) {
	l := &orderLog{got: map[string][]int{}, inflight: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			K string `json:"k"`
			I int    `json:"i"`
		}
		_ = json.NewDecoder(r.Body).Decode(&p)
		l.mu.Lock()
		l.inflight[p.K]++
		if p.K != "" && l.inflight[p.K] > 1 {
			l.overlap.Add(1)
		}
		l.mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // widen the window an overlap would need
		fail := rand.Float64() < failRate || (failIf != nil && failIf(p.K, p.I))
		l.mu.Lock()
		l.inflight[p.K]--
		if !fail {
			l.got[p.K] = append(l.got[p.K], p.I)
		}
		l.mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, l
}

func (l *orderLog) of(key string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.got[key]...)
}

// DESIGN §5a: per (address, key), delivery in acceptance order, one at a time, under
// random inbox failures, across two router replicas and a restart of one.
func TestOrderingKeysKeepOrderUnderFailures(t *testing.T) {
	t.Parallel()
	e, fc := setupAgents(t, map[string]string{"DELIVERY_BACKOFF_INITIAL": "5ms", "DELIVERY_BACKOFF_MAX": "30ms"})
	srv, log := orderedInbox(t, 0.3, nil)
	fc.set("ordered", mapping.TypeHTTPEndpoint, srv.URL, mapping.StatusActive, "")
	// A second replica on the same stream and database.
	second := &env{t: t, nats: e.nats, js: e.js, nc: e.nc, inbox: e.inbox, cfg: e.cfg}
	second.start()
	keys := []string{"conv-a", "conv-b", "conv-c", "conv-d"}
	const perKey = 40
	var ids []string
	for i := range perKey {
		for _, k := range keys {
			id := uuid.NewString()
			ids = append(ids, id)
			e.publish(keyed("ordered", k, i, time.Time{}), id)
		}
		if i == perKey/2 {
			second.stop()
			second.start()
		}
	}
	for _, id := range ids {
		e.waitStatus(id, "DELIVERED")
	}
	want := make([]int, perKey)
	for i := range want {
		want[i] = i
	}
	for _, k := range keys {
		require.Equal(t, want, log.of(k), "key %s delivered out of order", k)
	}
	require.Zero(t, log.overlap.Load(), "two messages of one key were in flight at once")
}

// DESIGN §5a: a failing message holds back only its own key; other keys and
// unkeyed messages of the same agent flow; once it is terminal the key moves on.
func TestFailingKeyBlocksOnlyItself(t *testing.T) {
	t.Parallel()
	e, fc := setupAgents(t, map[string]string{"DELIVERY_MAX_ATTEMPTS": "4", "DELIVERY_BACKOFF_INITIAL": "300ms", "DELIVERY_BACKOFF_MAX": "300ms"})
	srv, _ := orderedInbox(t, 0, func(k string, i int) bool { return k == "stuck" && i == 0 })
	fc.set("agent", mapping.TypeHTTPEndpoint, srv.URL, mapping.StatusActive, "")
	head, behind := uuid.NewString(), uuid.NewString()
	e.publish(keyed("agent", "stuck", 0, time.Time{}), head)
	e.publish(keyed("agent", "stuck", 1, time.Time{}), behind)
	var others []string
	for i := range 5 {
		a, b := uuid.NewString(), uuid.NewString()
		e.publish(keyed("agent", "free", i, time.Time{}), a)
		e.publish(keyed("agent", "", i, time.Time{}), b)
		others = append(others, a, b)
	}
	for _, id := range others {
		e.waitStatus(id, "DELIVERED")
	}
	_, hv := e.get(head)
	require.Equal(t, "PENDING", hv.Status, "the failing head is still retrying while the others are delivered")
	_, bv := e.get(behind)
	require.Equal(t, "PENDING", bv.Status)
	require.Zero(t, bv.Attempts, "the message behind the failing head waits without attempts")
	hv = e.waitStatus(head, "DEAD_LETTERED")
	require.Equal(t, "MAX_ATTEMPTS_EXCEEDED", hv.Reason)
	e.waitStatus(behind, "DELIVERED")
}

// DESIGN §5a: a replayed message goes to the back of its key.
func TestReplayGoesToBackOfKey(t *testing.T) {
	t.Parallel()
	e, fc := setupAgents(t, map[string]string{"DELIVERY_MAX_ATTEMPTS": "1"})
	var failFirst atomic.Bool
	failFirst.Store(true)
	srv, log := orderedInbox(t, 0, func(k string, i int) bool { return i == 0 && k == "q" && failFirst.Swap(false) })
	fc.set("rq", mapping.TypeHTTPEndpoint, srv.URL, mapping.StatusActive, "")
	first := uuid.NewString()
	e.publish(keyed("rq", "q", 0, time.Time{}), first)
	e.waitStatus(first, "DEAD_LETTERED")
	fc.set("rq", mapping.TypeHTTPEndpoint, srv.URL, mapping.StatusInactive, mapping.InactivePolicyHold) // park the key
	var later []string
	for i := 1; i <= 3; i++ {
		id := uuid.NewString()
		later = append(later, id)
		e.publish(keyed("rq", "q", i, time.Time{}), id)
	}
	e.waitReason(later[0], "AGENT_INACTIVE")
	resp, err := http.Post(e.adminURL+"/v1/messages/"+first+"/replay", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	fc.set("rq", mapping.TypeHTTPEndpoint, srv.URL, mapping.StatusActive, "")
	e.waitStatus(first, "DELIVERED")
	for _, id := range later {
		e.waitStatus(id, "DELIVERED")
	}
	require.Equal(t, []int{1, 2, 3, 0}, log.of("q"), "the replayed message went to the back of its key")
}

// waitReason waits until the message shows reason (while PENDING or not).
func (e *env) waitReason(id, reason string) apiclient.Message {
	e.t.Helper()
	var last apiclient.Message
	require.Eventually(e.t, func() bool {
		_, v := e.get(id)
		last = v
		return v.Reason == reason
	}, 20*time.Second, 10*time.Millisecond, "message %s never showed reason %s (last: %+v)", id, reason, last)
	return last
}

// DESIGN §5a: held messages wait without attempts, cost one CAMS lookup per agent
// per check, and are delivered in order once the agent is ACTIVE again.
func TestHoldForInactiveAgent(t *testing.T) {
	t.Parallel()
	e, fc := setupAgents(t, nil)
	fc.set("held", mapping.TypeNATSSubject, "inbox.held", mapping.StatusInactive, mapping.InactivePolicyHold)
	const n = 25
	var ids []string
	for i := range n {
		id := uuid.NewString()
		ids = append(ids, id)
		key := "k"
		if i%5 == 4 {
			key = "" // some unkeyed ones too
		}
		e.publish(keyed("held", key, i, time.Time{}), id)
	}
	for i, id := range ids {
		if i == 0 || i%5 == 4 {
			// The key's head and the unkeyed ones found the agent INACTIVE; the
			// rest of the key waits behind its head.
			e.waitReason(id, "AGENT_INACTIVE")
		}
	}
	for _, id := range ids {
		_, v := e.get(id)
		require.Equal(t, "PENDING", v.Status)
		require.Zero(t, v.Attempts, "holding is not an attempt")
	}
	// Lookups while held: bounded by one per agent per check (2s), not one per
	// message per poll. Wait long enough for every held row to come due again.
	start, base := time.Now(), fc.lookupsOf("held")
	require.Eventually(t, func() bool { return time.Since(start) > 12*time.Second }, 20*time.Second, 100*time.Millisecond)
	elapsed := time.Since(start)
	got := fc.lookupsOf("held") - base
	require.LessOrEqual(t, got, 2*int(elapsed/(2*time.Second))+2, "CAMS lookups while holding %d messages for %s", n, elapsed)

	fc.set("held", mapping.TypeNATSSubject, "inbox.held", mapping.StatusActive, mapping.InactivePolicyHold)
	reactivated := time.Now()
	for _, id := range ids {
		v := e.waitStatus(id, "DELIVERED")
		require.Equal(t, 1, v.Attempts)
	}
	t.Logf("held messages delivered %s after reactivation", time.Since(reactivated))
	var order []int
	for _, m := range e.inboxMsgs("inbox.held") {
		var p struct {
			K string `json:"k"`
			I int    `json:"i"`
		}
		require.NoError(t, json.Unmarshal(m.Data(), &p))
		if p.K == "k" {
			order = append(order, p.I)
		}
	}
	var want []int
	for i := range n {
		if i%5 != 4 {
			want = append(want, i)
		}
	}
	require.Equal(t, want, order, "held keyed messages delivered in order")
}

// DESIGN §5a: HOLD_MAX_AGE after acceptance, a held message is dead-lettered.
func TestHoldMaxAgeDeadLetters(t *testing.T) {
	t.Parallel()
	e, fc := setupAgents(t, map[string]string{"HOLD_MAX_AGE": "2s"})
	fc.set("never", mapping.TypeNATSSubject, "inbox.never", mapping.StatusInactive, mapping.InactivePolicyHold)
	id := e.send("never")
	e.waitReason(id, "AGENT_INACTIVE")
	v := e.waitStatus(id, "DEAD_LETTERED")
	require.Equal(t, "AGENT_INACTIVE", v.Reason)
	require.Zero(t, v.Attempts)
	require.Empty(t, e.inboxMsgs("inbox.never"))
}

// DESIGN §5a: an expired message is never delivered, whatever it waits for, and
// ends DEAD_LETTERED/EXPIRED; replaying it is 409.
func TestExpiry(t *testing.T) {
	t.Parallel()
	t.Run("atRouting", func(t *testing.T) {
		t.Parallel()
		e, fc := setupAgents(t, nil)
		fc.set("x", mapping.TypeNATSSubject, "inbox.x", mapping.StatusActive, "")
		id := uuid.NewString()
		e.publish(keyed("x", "", 0, time.Now().Add(-time.Second)), id) // a direct producer
		v := e.waitStatus(id, "DEAD_LETTERED")
		require.Equal(t, "EXPIRED", v.Reason)
		require.Zero(t, v.Attempts)
		require.Empty(t, e.inboxMsgs("inbox.x"))
		resp, err := http.Post(e.adminURL+"/v1/messages/"+id+"/replay", "", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusConflict, resp.StatusCode, "replaying an expired message")
	})
	t.Run("retrying", func(t *testing.T) {
		t.Parallel()
		e, fc := setupAgents(t, nil)
		in := newRecorder(t)
		in.fail.Store(true)
		fc.set("x", mapping.TypeHTTPEndpoint, in.srv.URL, mapping.StatusActive, "")
		id := uuid.NewString()
		// Long enough for a first attempt on a loaded machine; the retries' backoff
		// then runs into expiresAt.
		exp := time.Now().Add(3 * time.Second)
		e.publish(keyed("x", "", 0, exp), id)
		v := e.waitStatus(id, "DEAD_LETTERED")
		require.Equal(t, "EXPIRED", v.Reason)
		require.Positive(t, v.Attempts)
		// No attempt starts at or after expiresAt (DESIGN §5a). An attempt started
		// just before it may reach the inbox after it: the history's start times are
		// what the rule is about, not the inbox's clock.
		require.NotEmpty(t, v.History)
		for _, a := range v.History {
			if a.Outcome == "SUPERSEDED" || a.At == nil {
				continue
			}
			require.True(t, a.At.Before(exp), "attempt %d started at %s, after expiresAt %s", a.Attempt, a.At, exp)
		}
	})
	t.Run("held", func(t *testing.T) {
		t.Parallel()
		e, fc := setupAgents(t, nil)
		fc.set("x", mapping.TypeNATSSubject, "inbox.x", mapping.StatusInactive, mapping.InactivePolicyHold)
		id := uuid.NewString()
		e.publish(keyed("x", "", 0, time.Now().Add(1500*time.Millisecond)), id)
		e.waitReason(id, "AGENT_INACTIVE")
		v := e.waitStatus(id, "DEAD_LETTERED")
		require.Equal(t, "EXPIRED", v.Reason)
		require.Zero(t, v.Attempts)
	})
	t.Run("behindOpenBreaker", func(t *testing.T) {
		t.Parallel()
		e, fc := setupAgents(t, map[string]string{"BREAKER_FAILURES": "1", "BREAKER_OPEN_TIMEOUT": "1m"})
		in := newRecorder(t)
		in.fail.Store(true)
		fc.set("x", mapping.TypeHTTPEndpoint, in.srv.URL, mapping.StatusActive, "")
		opener := e.send("x")
		e.waitAttempts(opener, 1) // the breaker is open now, for a minute
		id := uuid.NewString()
		e.publish(keyed("x", "", 0, time.Now().Add(1500*time.Millisecond)), id)
		v := e.waitStatus(id, "DEAD_LETTERED")
		require.Equal(t, "EXPIRED", v.Reason)
		require.Zero(t, v.Attempts, "it waited behind the breaker, never attempted")
	})
	t.Run("behindItsKey", func(t *testing.T) {
		t.Parallel()
		e, fc := setupAgents(t, nil)
		srv, _ := orderedInbox(t, 0, func(k string, i int) bool { return i == 0 })
		fc.set("x", mapping.TypeHTTPEndpoint, srv.URL, mapping.StatusActive, "")
		e.publish(keyed("x", "k", 0, time.Time{}), uuid.NewString())
		id := uuid.NewString()
		e.publish(keyed("x", "k", 1, time.Now().Add(1500*time.Millisecond)), id)
		v := e.waitStatus(id, "DEAD_LETTERED")
		require.Equal(t, "EXPIRED", v.Reason)
		require.Zero(t, v.Attempts)
	})
}

// The admin API shows orderingKey and expiresAt and filters by orderingKey.
func TestAdminOrderingKeyFilter(t *testing.T) {
	t.Parallel()
	e, fc := setupAgents(t, nil)
	fc.set("f", mapping.TypeNATSSubject, "inbox.f", mapping.StatusActive, "")
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	a, b := uuid.NewString(), uuid.NewString()
	e.publish(keyed("f", "alpha", 0, exp), a)
	e.publish(keyed("f", "beta", 0, time.Time{}), b)
	e.waitStatus(a, "DELIVERED")
	e.waitStatus(b, "DELIVERED")
	resp, err := http.Get(e.adminURL + "/v1/messages?orderingKey=alpha")
	require.NoError(t, err)
	defer resp.Body.Close()
	var page apiclient.MessagePage
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
	require.Len(t, page.Items, 1, fmt.Sprint(page.Items))
	require.Equal(t, a, page.Items[0].MessageID)
	require.Equal(t, "alpha", page.Items[0].OrderingKey)
	require.NotNil(t, page.Items[0].ExpiresAt)
	require.True(t, exp.Equal(*page.Items[0].ExpiresAt))
}
