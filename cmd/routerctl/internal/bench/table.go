package bench

import (
	"sync"
	"sync/atomic"
)

// entry is what the run knows about one message, by seq. Times are Unix nanoseconds;
// 0 means "not yet". Senders and receivers touch entries concurrently, so every
// field is atomic.
type entry struct {
	intended   atomic.Int64 // when the message was meant to be sent (open loop) or was sent (closed loop)
	accepted   atomic.Int64 // when the 202 or PubAck came back
	delivered  atomic.Int64 // when the inbox first saw it
	deliveries atomic.Int32 // how many times the inbox saw it
}

const chunkBits = 16

type chunk [1 << chunkBits]entry

// seqTable maps seq → entry in chunks, so memory grows with the messages sent (about
// 32 bytes each) without per-message allocations, and an entry never moves once
// handed out. Only the generator grows it.
type seqTable struct {
	mu     sync.RWMutex
	chunks []*chunk
	n      atomic.Int64 // seqs handed out: 0..n-1 are valid
}

// next hands out the next seq and its entry.
func (t *seqTable) next() (int64, *entry) {
	seq := t.n.Load()
	c := int(seq >> chunkBits)
	t.mu.RLock()
	have := len(t.chunks)
	t.mu.RUnlock()
	if c >= have {
		t.mu.Lock()
		t.chunks = append(t.chunks, new(chunk))
		t.mu.Unlock()
	}
	t.mu.RLock()
	e := &t.chunks[c][seq&(1<<chunkBits-1)]
	t.mu.RUnlock()
	t.n.Add(1)
	return seq, e
}

// get returns the entry of seq, nil for a seq never handed out.
func (t *seqTable) get(seq int64) *entry {
	if seq < 0 || seq >= t.n.Load() {
		return nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return &t.chunks[seq>>chunkBits][seq&(1<<chunkBits-1)]
}

// each calls f for every entry handed out so far.
func (t *seqTable) each(f func(seq int64, e *entry)) {
	n := t.n.Load()
	t.mu.RLock()
	chunks := t.chunks
	t.mu.RUnlock()
	for seq := int64(0); seq < n; seq++ {
		f(seq, &chunks[seq>>chunkBits][seq&(1<<chunkBits-1)])
	}
}
