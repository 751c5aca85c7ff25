package router_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/consumer"
	"github.com/msgrouter/msgrouter/internal/router"
)

// batchRecorder remembers which stream messages were handled together.
type batchRecorder struct {
	mu      sync.Mutex
	batches [][]string // the bodies of each batch
}

func (b *batchRecorder) wrap(h consumer.Handler) consumer.Handler {
	return func(ctx context.Context, msgs []jetstream.Msg) []consumer.Action {
		bodies := make([]string, len(msgs))
		for i, m := range msgs {
			bodies[i] = string(m.Data())
		}
		b.mu.Lock()
		b.batches = append(b.batches, bodies)
		b.mu.Unlock()
		return h(ctx, msgs)
	}
}

// sizeOfFirstBatchWith returns the size of the first batch holding a body
// containing s (0: none).
func (b *batchRecorder) sizeOfFirstBatchWith(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, batch := range b.batches {
		for _, body := range batch {
			if strings.Contains(body, s) {
				return len(batch)
			}
		}
	}
	return 0
}

// pairsInOneBatch counts the keys m-0 ... m-(n-1) whose two copies were handled in
// one batch.
func (b *batchRecorder) pairsInOneBatch(n int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	pairs := 0
	for i := range n {
		key := fmt.Sprintf(`"m-%d"`, i)
		for _, batch := range b.batches {
			c := 0
			for _, body := range batch {
				if strings.Contains(body, key) {
					c++
				}
			}
			if c == 2 {
				pairs++
				break
			}
		}
	}
	return pairs
}

// backlog stops the router, lets publish fill the stream, and starts it again, so
// the messages are taken over together (one batch of up to 256).
func (e *env) backlog(publish func()) {
	e.t.Helper()
	e.stop()
	publish()
	e.start()
}

// countingInbox is an HTTP inbox that counts every delivery by messageId and does
// NOT dedupe, so a duplicate delivery is visible.
type countingInbox struct {
	srv    *httptest.Server
	mu     sync.Mutex
	counts map[string]int
	total  atomic.Int64
}

func newCountingInbox(t *testing.T) *countingInbox {
	c := &countingInbox{counts: map[string]int{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		c.mu.Lock()
		c.counts[r.Header.Get("X-Message-Id")]++
		c.mu.Unlock()
		c.total.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *countingInbox) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// Issue 8, item 1: text Postgres cannot store used to fail the takeover statement of
// the whole batch, forever (every batch-mate Nak'd every 2 s, the message never
// recorded). Now such a message ends REJECTED/INVALID_MESSAGE with its raw bytes,
// and its batch-mates are delivered. Siblings: an address with U+0000 (kept for
// inspection, made storable), invalid UTF-8 in a field, a CAMS answer with U+0000.
func TestUnstorableTextFailsNoBatch(t *testing.T) {
	t.Parallel()
	rec := &batchRecorder{}
	e := setup(t, nil, router.Options{WrapHandler: rec.wrap})
	e.cams.set("ok", mapping.TypeNATSSubject, "inbox.ok", mapping.StatusActive)
	e.cams.set("cams-nul", mapping.TypeHTTPEndpoint, "http://inbox.example/\x00in", mapping.StatusActive)

	poison := map[string]rejection{
		"NUL in correlationId": {`{"aiAgentAddress":"ok","payload":{},"senderMetadata":{"correlationId":"a\u0000b"}}`, "INVALID_MESSAGE"},
		"NUL in serviceName":   {`{"aiAgentAddress":"ok","payload":{},"senderMetadata":{"serviceName":"\u0000"}}`, "INVALID_MESSAGE"},
		"NUL in address":       {`{"aiAgentAddress":"a\u0000b","payload":{}}`, "INVALID_MESSAGE"},
		"invalid UTF-8":        {"{\"aiAgentAddress\":\"ok\",\"payload\":{},\"senderMetadata\":{\"correlationId\":\"\xff\xfe\"}}", "INVALID_MESSAGE"},
		"NUL from CAMS":        {`{"aiAgentAddress":"cams-nul","payload":{}}`, "CONFIG_ERROR"},
	}
	var poisonIDs map[string]string
	var good []string
	e.backlog(func() {
		for i := range 20 {
			id := uuid.NewString()
			good = append(good, id)
			e.publish(body("ok", fmt.Sprintf(`{"n":%d,"s":"\u0000"}`, i)), id)
			if i == 10 {
				poisonIDs = e.publishEach(poison)
			}
		}
	})

	for name, v := range e.waitRejected(poison, poisonIDs) {
		if p := poison[name]; p.reason == "INVALID_MESSAGE" {
			raw, err := base64.StdEncoding.DecodeString(v.RawMessageBase64)
			require.NoError(t, err)
			require.Equal(t, p.body, string(raw), "%s: raw bytes kept exactly", name)
		}
	}
	for _, id := range good {
		e.waitStatus(id, "DELIVERED")
	}
	require.Greater(t, rec.sizeOfFirstBatchWith(`a\u0000b`), 1, "the poison message had batch-mates")
	msgs := e.inboxMsgs("inbox.ok")
	require.Len(t, msgs, 20)
	got := map[string]bool{}
	for _, m := range msgs {
		got[string(m.Data())] = true
	}
	for i := range 20 {
		require.True(t, got[fmt.Sprintf(`{"n":%d,"s":"\u0000"}`, i)], "a payload with U+0000 escaped is delivered byte for byte")
	}
}

// The safety net behind the edge checks: should Postgres still refuse one row of a
// takeover batch for a data reason (here a trigger refusing it with SQLSTATE
// 22021), the batch is split, the good rows land and are delivered, and the refused
// message is recorded REJECTED/INVALID_MESSAGE with its raw bytes.
func TestPostgresRefusingARowFailsNoBatch(t *testing.T) {
	t.Parallel()
	rec := &batchRecorder{}
	e := setup(t, nil, router.Options{WrapHandler: rec.wrap})
	e.cams.set("ok", mapping.TypeNATSSubject, "inbox.ok", mapping.StatusActive)
	e.onMessageInsert("", "refuse_poison", `IF NEW.correlation_id = 'poison' THEN
	        RAISE EXCEPTION 'refused for the test' USING ERRCODE = '22021';
	    END IF;`)

	poisonBody := `{"aiAgentAddress":"ok","payload":{"p":1},"senderMetadata":{"correlationId":"poison"}}`
	poisonID := uuid.NewString()
	var good []string
	e.backlog(func() {
		for i := range 15 {
			id := uuid.NewString()
			good = append(good, id)
			e.publish(body("ok", fmt.Sprintf(`{"n":%d}`, i)), id)
			if i == 7 {
				e.publish(poisonBody, poisonID)
			}
		}
	})
	v := e.waitStatus(poisonID, "REJECTED")
	require.Equal(t, "INVALID_MESSAGE", v.Reason)
	require.Contains(t, v.LastError, "cannot be stored")
	raw, err := base64.StdEncoding.DecodeString(v.RawMessageBase64)
	require.NoError(t, err)
	require.Equal(t, poisonBody, string(raw))
	for _, id := range good {
		e.waitStatus(id, "DELIVERED")
	}
	require.Greater(t, rec.sizeOfFirstBatchWith(`"poison"`), 1, "the refused message had batch-mates")
	require.Len(t, e.inboxMsgs("inbox.ok"), 15)
}

// Issue 8, item 1: an HTTP inbox answering 500 with ~3 KB of non-ASCII text. The
// stored error used to be cut inside a multi-byte character, failing the batched
// result write: the batch-mates' results were lost and the failing message's
// attempts never grew, so it never dead-lettered. Now its attempts grow to
// DELIVERY_MAX_ATTEMPTS and it dead-letters; its batch-mates are delivered once.
func TestHostileInboxErrorBodyDeadLetters(t *testing.T) {
	t.Parallel()
	e := setup(t, map[string]string{"DELIVERY_MAX_ATTEMPTS": "3", "BREAKER_FAILURES": "100"})
	// Two inboxes whose bodies differ by one byte in front of ~3 KB of 2-byte
	// characters: whatever the length of the text before the body, a cut at a
	// byte limit splits a character for one of them.
	badInbox := func(prefix string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, prefix+strings.Repeat("ошибка", 250))
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	good := newCountingInbox(t)
	e.cams.set("bad-1", mapping.TypeHTTPEndpoint, badInbox("E").URL, mapping.StatusActive)
	e.cams.set("bad-2", mapping.TypeHTTPEndpoint, badInbox("EE").URL, mapping.StatusActive)
	e.cams.set("good", mapping.TypeHTTPEndpoint, good.srv.URL, mapping.StatusActive)

	badIDs := []string{uuid.NewString(), uuid.NewString()}
	var goodIDs []string
	e.backlog(func() {
		e.publish(body("bad-1", `{}`), badIDs[0])
		e.publish(body("bad-2", `{}`), badIDs[1])
		for range 20 {
			id := uuid.NewString()
			goodIDs = append(goodIDs, id)
			e.publish(body("good", `{}`), id)
		}
	})
	for _, id := range badIDs {
		v := e.waitStatus(id, "DEAD_LETTERED")
		require.Equal(t, "MAX_ATTEMPTS_EXCEEDED", v.Reason)
		require.Equal(t, 3, v.Attempts)
		require.Len(t, v.History, 3)
		require.Contains(t, v.LastError, "ошибка")
		require.True(t, utf8.ValidString(v.LastError))
	}
	for _, id := range goodIDs {
		e.waitStatus(id, "DELIVERED")
	}
	e.stop() // in-flight deliveries finish: nothing more can arrive
	counts := good.snapshot()
	for _, id := range goodIDs {
		require.Equal(t, 1, counts[id], "delivered exactly once: %s", id)
	}
}

// Issue 8, item 2: direct producers publishing the same serviceName +
// senderProvidedMessageId twice without Nats-Msg-Id, with a backlog, so both copies
// land in one takeover batch. The statement stores one; only that one is handed to
// the dispatcher, so each id arrives once at an inbox that does not dedupe.
func TestSameIDTwiceInOneBatchDeliveredOnce(t *testing.T) {
	t.Parallel()
	rec := &batchRecorder{}
	e := setup(t, nil, router.Options{WrapHandler: rec.wrap})
	inbox := newCountingInbox(t)
	e.cams.set("a", mapping.TypeHTTPEndpoint, inbox.srv.URL, mapping.StatusActive)
	const n = 20
	e.backlog(func() {
		for range 2 {
			for i := range n {
				e.publish(fmt.Sprintf(`{"aiAgentAddress":"a","payload":{"i":%d},"senderMetadata":{"serviceName":"crm","senderProvidedMessageId":"m-%d"}}`, i, i), "")
			}
		}
	})
	require.Eventually(t, func() bool { return inbox.total.Load() >= n }, 20*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return gathered(t, e.reg, "msgrouter_router_duplicates_total") >= n },
		20*time.Second, 10*time.Millisecond)
	require.Positive(t, rec.pairsInOneBatch(n), "some ids had both copies in one batch")
	e.stop() // in-flight deliveries finish: nothing more can arrive
	counts := inbox.snapshot()
	require.Len(t, counts, n)
	for id, c := range counts {
		require.Equal(t, 1, c, "delivered once: %s", id)
	}
	require.Zero(t, gathered(t, e.reg, "msgrouter_idempotency_conflicts_total"), "same address and payload: no conflict")
}

// Issue 8, item 9 (DESIGN §2): an idempotency key reused with another address or
// payload is counted, in one batch and across batches; a plain retry is not.
func TestIdempotencyConflictsCounted(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	e.cams.set("a", mapping.TypeNATSSubject, "inbox.a", mapping.StatusActive)
	e.cams.set("b", mapping.TypeNATSSubject, "inbox.b", mapping.StatusActive)
	msg := func(addr, payload, key string) string {
		return fmt.Sprintf(`{"aiAgentAddress":%q,"payload":%s,"senderMetadata":{"serviceName":"crm","senderProvidedMessageId":%q}}`, addr, payload, key)
	}
	conflicts := func() float64 { return gathered(t, e.reg, "msgrouter_idempotency_conflicts_total") }
	duplicates := func() float64 { return gathered(t, e.reg, "msgrouter_router_duplicates_total") }

	// Across batches: the stored message is compared.
	e.publish(msg("a", `{"v":1}`, "k-1"), "")
	require.Eventually(t, func() bool { return len(e.inboxMsgs("inbox.a")) == 1 }, 20*time.Second, 10*time.Millisecond)
	e.publish(msg("a", `{"v":1}`, "k-1"), "") // a plain retry
	require.Eventually(t, func() bool { return duplicates() == 1 }, 20*time.Second, 10*time.Millisecond)
	require.Zero(t, conflicts())
	e.publish(msg("a", `{"v":2}`, "k-1"), "") // another payload
	require.Eventually(t, func() bool { return conflicts() == 1 }, 20*time.Second, 10*time.Millisecond)
	e.publish(msg("b", `{"v":1}`, "k-1"), "") // another agent
	require.Eventually(t, func() bool { return conflicts() == 2 }, 20*time.Second, 10*time.Millisecond)

	// In one batch: the first copy is compared.
	e.backlog(func() {
		e.publish(msg("a", `{"v":1}`, "k-2"), "")
		e.publish(msg("b", `{"v":1}`, "k-2"), "")
	})
	require.Eventually(t, func() bool { return conflicts() == 1 }, 20*time.Second, 10*time.Millisecond, "metrics restart with the router")
	require.Eventually(t, func() bool { return len(e.inboxMsgs("inbox.a"))+len(e.inboxMsgs("inbox.b")) == 2 }, 20*time.Second, 10*time.Millisecond)
	e.stop()
	require.Len(t, append(e.inboxMsgs("inbox.a"), e.inboxMsgs("inbox.b")...), 2, "one submission of k-2 wins, the other is dropped")
}

// DESIGN §6 (issue 8, item 9): an HTTP inbox URL's userinfo never leaves the router:
// not in the destination, not in an error text quoting the URL, in the single view
// and in lists.
func TestAdminHidesInboxCredentials(t *testing.T) {
	t.Parallel()
	e := setup(t, map[string]string{"DELIVERY_MAX_ATTEMPTS": "1"})
	inbox := newCountingInbox(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused: the client's error quotes the URL
	withCreds := func(u string) string { return strings.Replace(u, "http://", "http://agent-user:s3cret%40x@", 1) }
	e.cams.set("up", mapping.TypeHTTPEndpoint, withCreds(inbox.srv.URL)+"/in", mapping.StatusActive)
	e.cams.set("down", mapping.TypeHTTPEndpoint, withCreds(deadURL)+"/in", mapping.StatusActive)
	up, down := uuid.NewString(), uuid.NewString()
	e.publish(body("up", `{}`), up)
	e.publish(body("down", `{}`), down)
	v := e.waitStatus(up, "DELIVERED")
	require.Equal(t, inbox.srv.URL+"/in", v.Destination.Name)
	v = e.waitStatus(down, "DEAD_LETTERED")
	require.Equal(t, deadURL+"/in", v.Destination.Name)
	require.NotEmpty(t, v.LastError)

	for _, path := range []string{"/v1/messages/" + up, "/v1/messages/" + down, "/v1/messages", "/v1/messages?status=DEAD_LETTERED"} {
		resp, err := http.Get(e.adminURL + path)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Contains(t, string(b), "127.0.0.1", path)
		require.NotContains(t, string(b), "s3cret", path)
		require.NotContains(t, string(b), "agent-user", path)
	}
}

// Admin filters are outside text too: one Postgres cannot compare is a 400, not a
// failed query (503).
func TestAdminRefusesUnstorableFilters(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	for _, path := range []string{"/v1/messages?aiAgentAddress=a%00b", "/v1/messages?aiAgentAddress=%FF", "/v1/messages?cursor=%00"} {
		resp, err := http.Get(e.adminURL + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, path)
	}
	for _, body := range []string{`{"aiAgentAddress":"a\u0000"}`, `{"reason":"\u0000"}`} {
		resp, err := http.Post(e.adminURL+"/v1/dead-letters/replay", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	}
}

// A batch statement failing for a reason other than the data (here a trigger
// raising serialization_failure, SQLSTATE 40001, as a Postgres in trouble would) is
// not split and nothing is recorded as INVALID_MESSAGE: the messages go back to the
// stream, are retried, and are delivered once the fault is gone.
func TestTransientTakeoverErrorIsRetriedNotRejected(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	e.cams.set("ok", mapping.TypeNATSSubject, "inbox.ok", mapping.StatusActive)
	// A sequence counts the failures: it is not rolled back with the statement.
	ctx := context.Background()
	conn := e.onMessageInsert("CREATE SEQUENCE hits;", "fail_transiently", `IF NEW.correlation_id = 'transient' THEN
	        PERFORM nextval('hits');
	        RAISE EXCEPTION 'try again' USING ERRCODE = '40001';
	    END IF;`)

	id := uuid.NewString()
	e.publish(`{"aiAgentAddress":"ok","payload":{},"senderMetadata":{"correlationId":"transient"}}`, id)
	require.Eventually(t, func() bool {
		var n int64
		return conn.QueryRow(ctx, `SELECT last_value FROM hits`).Scan(&n) == nil && n >= 2
	}, 20*time.Second, 20*time.Millisecond, "the takeover was tried again")
	code, _ := e.get(id)
	require.Equal(t, http.StatusNotFound, code, "nothing recorded while Postgres fails")

	_, err := conn.Exec(ctx, `DROP TRIGGER fail_transiently ON messages`)
	require.NoError(t, err)
	v := e.waitStatus(id, "DELIVERED")
	require.Equal(t, 1, v.Attempts)
}

// onMessageInsert runs prelude, then installs a trigger name on messages running
// check (PL/pgSQL) before each insert. It returns a connection to the router's
// database, closed when the test ends.
func (e *env) onMessageInsert(prelude, name, check string) *pgx.Conn {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.cfg.DatabaseURL)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = conn.Close(context.Background()) })
	_, err = conn.Exec(ctx, prelude+`
	CREATE FUNCTION `+name+`() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
	    `+check+`
	    RETURN NEW;
	END $$;
	CREATE TRIGGER `+name+` BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION `+name+`()`)
	require.NoError(e.t, err)
	return conn
}
