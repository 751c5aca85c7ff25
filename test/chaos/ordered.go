package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
)

// Ordered traffic (DESIGN §5a, issue 12): a share of every scenario's messages
// carries a senderMetadata.orderingKey — a few keys per agent — and the HTTP inboxes
// fail a share of keyed deliveries at random. The load sends the messages of one key
// one after another (the next only once the previous was accepted), so acceptance
// order is the order the harness built them in (kseq); the checker then asserts, per
// key, that the first arrivals at the inbox follow kseq. A message arriving again
// after its first arrival is a duplicate (at-least-once), not an order violation;
// a message that never arrives (dead-lettered) leaves a gap, not a violation.

const (
	// orderedEvery: every orderedEvery-th message (of an agent that gets
	// deliveries) is keyed.
	orderedEvery = 3
	// orderedKeys is how many keys each agent's keyed messages are spread over.
	orderedKeys = 3
	// orderedFailRate is the share of keyed deliveries an HTTP inbox fails (500).
	orderedFailRate = 0.15
)

// ordered is a keyed message's place in its key.
type ordered struct {
	key  string // the orderingKey, unique to the scenario and agent
	kseq int    // place in the key, in acceptance order
	prev *tracked
	sent chan struct{} // closed once the load is done submitting it
}

// markOrdered gives every orderedEvery-th message of an agent with an inbox an
// ordering key, rewriting its body and payload (the payload carries key and kseq,
// so the inbox can tell the order it received them in). Direct messages (published
// without an id) are left unkeyed: their acceptance order is not the harness's.
func markOrdered(scenario string, msgs []*tracked) {
	last := map[string]*tracked{}
	count := map[string]int{}
	index := map[string]int{} // agents sharing an inbox get keys of their own
	for i, m := range msgs {
		if i%orderedEvery != 1 || m.direct || m.agent.arrivals == nil {
			continue
		}
		if _, ok := index[m.agent.address]; !ok {
			index[m.agent.address] = len(index)
		}
		n := count[m.agent.address]
		count[m.agent.address]++
		key := fmt.Sprintf("%s-a%d-k%d", scenario, index[m.agent.address], n%orderedKeys)
		id := m.agent.address + "\x00" + key
		o := &ordered{key: key, prev: last[id], sent: make(chan struct{})}
		if o.prev != nil {
			o.kseq = o.prev.ord.kseq + 1
		}
		last[id] = m
		payload := fmt.Sprintf(`{"scenario":%q,"seq":%d,"orderingKey":%q,"kseq":%d}`, scenario, m.seq, key, o.kseq)
		body, _ := json.Marshal(map[string]any{
			"aiAgentAddress": m.agent.address,
			"payload":        json.RawMessage(payload),
			"senderMetadata": map[string]string{
				"serviceName": serviceName, "correlationId": scenario, "senderProvidedMessageId": m.spmid,
				"orderingKey": key,
			},
		})
		m.body, m.payload, m.ord = body, compact([]byte(payload)), o
	}
}

// waitTurn blocks until the previous message of m's key has been submitted (so m is
// accepted after it), or ctx ends.
func (m *tracked) waitTurn(ctx context.Context) {
	if m.ord == nil || m.ord.prev == nil {
		return
	}
	select {
	case <-m.ord.prev.ord.sent:
	case <-ctx.Done():
	}
}

// doneTurn lets the next message of m's key go.
func (m *tracked) doneTurn() {
	if m.ord != nil {
		close(m.ord.sent)
	}
}

// keyedBody returns the key and kseq a keyed payload carries.
func keyedBody(body []byte) (string, int, bool) {
	if !bytes.Contains(body, []byte(`"kseq"`)) {
		return "", 0, false
	}
	var p struct {
		Key  string `json:"orderingKey"`
		KSeq *int   `json:"kseq"`
	}
	if json.Unmarshal(body, &p) != nil || p.Key == "" || p.KSeq == nil {
		return "", 0, false
	}
	return p.Key, *p.KSeq, true
}

// failKeyed reports whether an HTTP inbox should fail this delivery: a random share
// of keyed ones, so keys see retries while later messages wait behind them.
func failKeyed(body []byte) bool {
	_, _, ok := keyedBody(body)
	return ok && rand.Float64() < orderedFailRate
}

// orderLog keeps, per key, the kseqs in the order they first arrived.
type orderLog struct {
	mu    sync.Mutex
	first map[string][]int
}

// note records a first arrival (arrivals.record calls it once per messageId).
func (l *orderLog) note(body []byte) {
	key, kseq, ok := keyedBody(body)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.first == nil {
		l.first = map[string][]int{}
	}
	l.first[key] = append(l.first[key], kseq)
}

func (l *orderLog) of(key string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.first[key]...)
}

// judgeOrder checks, for every key of the batch, that its messages first arrived in
// acceptance order; each arrival that comes after a later message of its key counts
// as one violation (Result.OutOfOrder).
func judgeOrder(res *Result, msgs []*tracked) {
	type keyOf struct {
		a   *agent
		key string
	}
	keys := map[keyOf]bool{}
	for _, m := range msgs {
		if m.ord != nil && m.acceptedID() != "" {
			res.Keyed++
			keys[keyOf{m.agent, m.ord.key}] = true
		}
	}
	var bad []string
	for k := range keys {
		got := k.a.arrivals.order.of(k.key)
		high := -1
		for _, s := range got {
			if s < high {
				res.OutOfOrder++
			}
			high = max(high, s)
		}
		if !sort.IntsAreSorted(got) {
			bad = append(bad, fmt.Sprintf("key %s of %s arrived out of acceptance order: %v", k.key, k.a.address, got))
		}
	}
	sort.Strings(bad)
	for i, b := range bad {
		if i == 5 {
			res.Problems = append(res.Problems, fmt.Sprintf("... and %d more keys out of order", len(bad)-5))
			break
		}
		res.Problems = append(res.Problems, b)
	}
}
