package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/msgrouter/msgrouter/internal/message"
)

// Expected terminal statuses.
const (
	statusDelivered    = "DELIVERED"
	statusRejected     = "REJECTED"
	statusDeadLettered = "DEAD_LETTERED"
	statusPending      = "PENDING"
)

// serviceName is the senderMetadata.serviceName of every message: with the
// senderProvidedMessageId it fixes the messageId (DESIGN §2).
const serviceName = "chaos"

// agent is one of the harness's agents and how its messages must end.
type agent struct {
	address string
	kind    string // what stands behind it, for reports
	weight  int    // share of the load, in percent
	expect  string // the terminal status its messages must reach
	// arrivals is the inbox the harness controls; nil when nothing is delivered
	// (an unknown agent).
	arrivals *arrivals
}

// tracked is one message of a scenario, from submission to its checked end.
type tracked struct {
	seq     int
	agent   *agent
	direct  bool     // published straight to the stream, no id of any kind (Scenario.Direct)
	spmid   string   // senderProvidedMessageId
	body    []byte   // the envelope, identical for every submission
	payload []byte   // the payload, compacted, as the inbox must receive it
	wantID  string   // the messageId DESIGN §2 derives
	ord     *ordered // its ordering key and place in it, nil when unkeyed (ordered.go)

	mu         sync.Mutex
	id         string         // the accepted messageId, "" until a 202
	acceptedAt time.Time      // when the first 202 came
	ids        map[string]int // every messageId a 202 returned

	// Filled in by the checker.
	status, reason, lastError string
	attempts                  int
	receivedAt, terminalAt    time.Time
}

func (m *tracked) accepted(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ids == nil {
		m.ids = map[string]int{}
	}
	m.ids[id]++
	if m.id == "" {
		m.id, m.acceptedAt = id, time.Now()
	}
}

func (m *tracked) acceptedID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id
}

// newBatch builds a scenario's messages: agents picked by weight in a fixed
// pattern, ids stable across submissions.
func newBatch(runID, scenario string, n int, agents []*agent) []*tracked {
	var wheel []*agent
	for _, a := range agents {
		for range a.weight {
			wheel = append(wheel, a)
		}
	}
	msgs := make([]*tracked, n)
	for i := range msgs {
		a := wheel[(i*37)%len(wheel)] // 37 is coprime with 100: spreads agents evenly in time
		spmid := fmt.Sprintf("%s-%s-%06d", runID, scenario, i)
		// A big integer and a long decimal: the agent must get the exact digits.
		payload := fmt.Sprintf(`{"scenario":%q,"seq":%d,"big":123456789012345678901234567890,"dec":0.10000000000000000000001,"note":"chaos \u00e9\u4e2d"}`, scenario, i)
		env := map[string]any{
			"aiAgentAddress": a.address,
			"payload":        json.RawMessage(payload),
			"senderMetadata": map[string]string{
				"serviceName": serviceName, "correlationId": scenario, "senderProvidedMessageId": spmid,
			},
		}
		body, _ := json.Marshal(env)
		msgs[i] = &tracked{
			seq: i, agent: a, spmid: spmid, body: body, payload: compact([]byte(payload)),
			wantID: message.SenderID(serviceName, spmid).String(),
		}
	}
	return msgs
}

func compact(b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return b
	}
	return out.Bytes()
}

// loadStats is what the load generator saw.
type loadStats struct {
	submissions int // HTTP 202s and direct publishes, duplicates included
	retries     int // submissions retried after a 503, 429, 5xx or connection error
	gaveUp      int // messages never accepted within the give-up time
	idMismatch  []string
	problems    []string
}

// loader submits a batch to ingest at a steady rate, retrying each message with the
// same body (so the same senderProvidedMessageId) until it is accepted.
type loader struct {
	ingestURL string
	client    *http.Client
	js        jetstream.JetStream
	workers   int
	giveUp    time.Duration
	gate      *sync.RWMutex // held for writing while a fault holds the load back

	mu    sync.Mutex
	stats loadStats
}

func newLoader(ingestURL string, js jetstream.JetStream, workers int) *loader {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = workers * 2
	return &loader{
		ingestURL: ingestURL + "/v1/messages",
		client:    &http.Client{Transport: tr, Timeout: 10 * time.Second},
		js:        js,
		workers:   workers,
		giveUp:    60 * time.Second,
	}
}

// run sends msgs spread evenly over d. With duplicates, every message is submitted
// twice at once, half of them a third time over HTTP later, and a quarter once more
// straight to JetStream without a Nats-Msg-Id (beyond the JetStream dedupe: only
// Postgres uniqueness stops that copy).
func (l *loader) run(ctx context.Context, msgs []*tracked, d time.Duration, duplicates bool) loadStats {
	jobs := make(chan *tracked)
	go func() {
		defer close(jobs)
		start := time.Now()
		interval := d / time.Duration(max(len(msgs), 1))
		for i, m := range msgs {
			if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			select {
			case <-ctx.Done():
				return
			case jobs <- m:
			}
		}
	}()
	var wg sync.WaitGroup
	for range l.workers {
		wg.Go(func() {
			for m := range jobs {
				m.waitTurn(ctx) // a keyed message goes once the previous one of its key was accepted
				if l.gate != nil {
					l.gate.RLock() // a fault holding the load back waits for this send
				}
				switch {
				case m.direct:
					l.publishNew(ctx, m)
				case !duplicates:
					l.send(ctx, m)
				default:
					var pair sync.WaitGroup
					pair.Go(func() { l.send(ctx, m) })
					l.send(ctx, m)
					pair.Wait()
				}
				if l.gate != nil {
					l.gate.RUnlock()
				}
				m.doneTurn()
			}
		})
	}
	wg.Wait()
	if duplicates {
		l.resubmit(ctx, msgs)
	}
	for _, m := range msgs {
		m.mu.Lock()
		if m.id == "" && (!m.direct || m.acceptedAt.IsZero()) {
			l.stats.gaveUp++
		}
		for id := range m.ids {
			if id != m.wantID && !m.direct { // a direct message's id is learnt, not derived here
				l.stats.idMismatch = append(l.stats.idMismatch, fmt.Sprintf("%s: got messageId %s, want %s", m.spmid, id, m.wantID))
			}
		}
		m.mu.Unlock()
	}
	return l.stats
}

func (l *loader) resubmit(ctx context.Context, msgs []*tracked) {
	inParallel(ctx, l.workers, msgs, func(m *tracked) {
		if m.acceptedID() == "" {
			return // never accepted: nothing to duplicate
		}
		if m.seq%2 == 0 {
			l.send(ctx, m)
		}
		if m.seq%4 == 1 {
			l.publishDirect(ctx, m)
		}
	})
}

// inParallel runs do on each of msgs on workers goroutines and returns when all
// are done; once ctx ends, the messages not yet handed out are skipped.
func inParallel(ctx context.Context, workers int, msgs []*tracked, do func(*tracked)) {
	jobs := make(chan *tracked)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for m := range jobs {
				do(m)
			}
		})
	}
	for _, m := range msgs {
		select {
		case jobs <- m:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
}

// publishDirect publishes the envelope to the router's stream as a direct producer
// would, without a Nats-Msg-Id: the router derives the same messageId from the
// senderProvidedMessageId (DESIGN §3) and must see that it has the message already.
func (l *loader) publishDirect(ctx context.Context, m *tracked) {
	l.publishUntilAcked(ctx, m, nil)
}

// publishUntilAcked publishes m's body to the router's stream, retrying until
// JetStream acknowledges it or the give-up time; acked, if not nil, runs once it
// has.
func (l *loader) publishUntilAcked(ctx context.Context, m *tracked, acked func()) {
	deadline := time.Now().Add(l.giveUp)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := l.js.Publish(pctx, "router.messages", m.body)
		cancel()
		if err == nil {
			if acked != nil {
				acked()
			}
			l.count(func(s *loadStats) { s.submissions++ })
			return
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			l.problem(fmt.Sprintf("%s: direct publish failed: %v", m.spmid, err))
			return
		}
		l.count(func(s *loadStats) { s.retries++ })
		sleep(ctx, 200*time.Millisecond)
	}
}

// send submits m until a 202 or the give-up time. Retries reuse the same body, so
// the same senderProvidedMessageId: a retry must never create a second message.
func (l *loader) send(ctx context.Context, m *tracked) {
	deadline := time.Now().Add(l.giveUp)
	wait := 50 * time.Millisecond
	for {
		id, retryAfter, err := l.post(ctx, m.body)
		if err == nil {
			m.accepted(id)
			l.count(func(s *loadStats) { s.submissions++ })
			return
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			l.problem(fmt.Sprintf("%s: ingest refused the message: %v", m.spmid, err))
			return
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			l.problem(fmt.Sprintf("%s: not accepted within %s: %v", m.spmid, l.giveUp, err))
			return
		}
		l.count(func(s *loadStats) { s.retries++ })
		sleep(ctx, max(wait, min(retryAfter, time.Second)))
		wait = min(2*wait, time.Second)
	}
}

type permanentError struct{ status int }

func (e *permanentError) Error() string { return "HTTP " + strconv.Itoa(e.status) }

func (l *loader) post(ctx context.Context, body []byte) (id string, retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.ingestURL, bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusAccepted:
		var out struct {
			MessageID string `json:"messageId"`
		}
		if err := json.Unmarshal(b, &out); err != nil || out.MessageID == "" {
			return "", 0, &permanentError{status: resp.StatusCode}
		}
		return out.MessageID, 0, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return "", time.Duration(secs) * time.Second, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	default:
		return "", 0, fmt.Errorf("%w: %s", &permanentError{status: resp.StatusCode}, bytes.TrimSpace(b))
	}
}

func (l *loader) count(f func(*loadStats)) {
	l.mu.Lock()
	f(&l.stats)
	l.mu.Unlock()
}

func (l *loader) problem(p string) {
	l.mu.Lock()
	if len(l.stats.problems) < 20 {
		l.stats.problems = append(l.stats.problems, p)
	}
	l.mu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
