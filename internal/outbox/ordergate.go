package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Ordering keys, the cheap way (DESIGN §5a).
//
// A keyed message may go out once two things hold: every earlier message of its
// key is in Postgres (the order gate), and none of them is still pending (the head
// rule of claimSQL). The head rule is a probe of outbox_key_idx at claim time. The
// gate cannot be read from Postgres — an earlier message of the key may still be
// in another batch, another replica, or back in the stream after a Nak or a
// replica's death, and nobody knows its key until it is taken over — so it is read
// from JetStream: the router's consumer acknowledges a message only after its
// record committed (or it was terminated as poison), and the consumer's ack floor
// (ConsumerInfo.AckFloor.Stream) is the stream sequence below which every message
// is acknowledged. A keyed message at sequence s passes the gate once the ack floor
// is ≥ s: then every earlier message, of any key, has been taken over.
//
// Keyed rows therefore go from the takeover to the gate (in process, not leased),
// and from the gate through claimGatedSQL (the head rule, for those rows only) to
// their lane; a keyed row whose result frees its key claims the key's next row in
// the same transaction (successorSQL), so a busy key moves at the speed of
// deliver → record, with no sweep in between. Rows behind their head are parked as
// the sweep parks them; the trigger of migration 0002 wakes them.
//
// The gate waits at most the lease: a keyed row still gated then is due like any
// row left behind and the sweep claims it with the head rule alone (this is also
// how rows gated in a replica that died go out). So order holds unless an earlier
// message of the key is held up before its takeover for longer than the lease
// (DELIVERY_TIMEOUT×3, at least 10 s; README "Ordering keys").

// gatePoll is how often the ack floor is read while keyed messages wait at the gate.
var gatePoll = 2 * time.Millisecond

// successors collects the rows a CompleteNext claimed.
type successors struct {
	token   uuid.UUID
	lease   time.Duration
	claimed []Claimed
}

// successorSQL claims the head of each key named by $1/$2, if it is due (it passed
// the order gate, or was woken by the trigger of migration 0002 when the row that
// led the key left the outbox in this same transaction). Runs after the statements
// that applied the batch's results. A head locked by a claim elsewhere is waited
// for and then re-checked on its latest version (READ COMMITTED): claimed
// meanwhile, it is no longer due.
const successorSQL = `
WITH k AS (
    SELECT DISTINCT addr, key FROM unnest($1::text[], $2::text[]) AS k(addr, key)
), heads AS (
    SELECT h.message_id FROM k CROSS JOIN LATERAL (
        SELECT o.message_id, o.due_at FROM outbox o
        WHERE o.ai_agent_address = k.addr AND o.ordering_key = k.key
        ORDER BY o.order_seq, o.message_id
        LIMIT 1) h
    WHERE h.due_at <= now()
), c AS (
    UPDATE outbox o SET due_at = now() + $3::interval, lease_token = $4, held = false, parked = false
    FROM heads WHERE o.message_id = heads.message_id AND o.due_at <= now()
    RETURNING o.message_id, o.route
)
SELECT m.message_id, m.ai_agent_address, coalesce(m.destination_type, ''), coalesce(m.destination_name, ''),
       m.payload, coalesce(m.sender_id, ''), coalesce(m.correlation_id, ''), coalesce(m.sender_message_id, ''),
       coalesce(m.traceparent, ''), m.accepted_at, m.attempts, c.route, m.agent_secrets,
       coalesce(m.ordering_key, ''), m.expires_at, coalesce(m.order_seq, 0)
FROM c JOIN messages m ON m.message_id = c.message_id`

// queueSuccessors adds successorSQL for the keys of results to a Complete batch.
func queueSuccessors(b *pgx.Batch, results []Result, next *successors, into *[]Claimed) {
	var addrs, keys []string
	for _, r := range results {
		if r.OrderingKey != "" {
			addrs, keys = append(addrs, r.Address), append(keys, r.OrderingKey)
		}
	}
	if len(keys) == 0 {
		return
	}
	b.Queue(successorSQL, addrs, keys, next.lease, next.token).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			c := Claimed{Token: next.token, Swept: true}
			var expires pgtype.Timestamptz
			var seq int64
			if err := rows.Scan(&c.ID, &c.Address, &c.DestType, &c.DestName, &c.Payload, &c.SenderID, &c.CorrelationID,
				&c.SenderMessageID, &c.Traceparent, &c.AcceptedAt, &c.Attempts, &c.Route, &c.AgentSecrets,
				&c.OrderingKey, &expires, &seq); err != nil {
				return err
			}
			if expires.Valid {
				c.ExpiresAt = expires.Time
			}
			c.OrderSeq = uint64(seq)
			*into = append(*into, c)
		}
		return rows.Err()
	})
}

// claimGatedSQL claims the rows $1 (keyed rows that passed the order gate) that are
// heads of their key, and parks those behind their head, as claimSQL does for due
// rows. Only rows nobody holds and nothing else has moved on (not claimed by the
// sweep after the lease, not parked, not held) are looked at; rows locked by
// another transaction right now are skipped and reported as neither.
const claimGatedSQL = `
WITH due AS (
    SELECT o.message_id,
           EXISTS (
               SELECT 1 FROM outbox p
               WHERE p.ai_agent_address = o.ai_agent_address AND p.ordering_key = o.ordering_key
                 AND p.ordering_key IS NOT NULL
                 AND (p.order_seq, p.message_id) < (o.order_seq, o.message_id)) AS behind
    FROM outbox o
    WHERE o.message_id = ANY($1) AND o.lease_token IS NULL AND NOT o.parked AND NOT o.held
    FOR UPDATE OF o SKIP LOCKED
), claimed AS (
    UPDATE outbox o SET due_at = now() + $2::interval, lease_token = $3
    FROM due WHERE o.message_id = due.message_id AND NOT due.behind AND o.lease_token IS NULL
    RETURNING o.message_id
), parked AS (
    UPDATE outbox o SET due_at = now() + $4::interval, parked = true
    FROM due WHERE o.message_id = due.message_id AND due.behind AND o.lease_token IS NULL
    RETURNING o.message_id
)
SELECT message_id, false FROM claimed
UNION ALL
SELECT message_id, true FROM parked`

// claimGated claims, for lease to a new token, those of ids that are heads of their
// key, parks the others that wait behind their head, and returns the token, the
// claimed ids and the ids it looked at (claimed or parked). An id not looked at is
// locked elsewhere, gone, or already moved on.
func (s *Store) claimGated(ctx context.Context, ids []uuid.UUID, lease time.Duration) (uuid.UUID, map[uuid.UUID]bool, map[uuid.UUID]bool, []uuid.UUID, error) {
	token := uuid.New()
	rows, err := s.pool.Query(ctx, claimGatedSQL, ids, lease, token, parkFor)
	if err != nil {
		return token, nil, nil, nil, fmt.Errorf("error claiming keyed rows: %w", err)
	}
	claimed, looked := map[uuid.UUID]bool{}, map[uuid.UUID]bool{}
	var parked []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		var isParked bool
		if err := rows.Scan(&id, &isParked); err != nil {
			rows.Close()
			return token, nil, nil, nil, fmt.Errorf("error claiming keyed rows: %w", err)
		}
		looked[id] = true
		if isParked {
			parked = append(parked, id)
		} else {
			claimed[id] = true
		}
	}
	if err := rows.Err(); err != nil {
		return token, nil, nil, nil, fmt.Errorf("error claiming keyed rows: %w", err)
	}
	if len(parked) > 0 {
		if _, err := s.unparkHeads(ctx, parked); err != nil {
			return token, claimed, looked, parked, err
		}
	}
	return token, claimed, looked, parked, nil
}

// orderGate holds keyed jobs handed over by the takeover until the ack floor
// passes them (see the top of this file).
type orderGate struct {
	mu      sync.Mutex
	waiting []*gated
	wake    chan struct{}

	// Used by runGate only.
	floor      uint64
	floorSince time.Time         // when the floor last moved
	lastScan   time.Time         // when waiting jobs were last checked against the stream
	keys       map[uint64]string // stream seq → address\x00key, above the floor
}

// gateStuck is how long the ack floor must stand still before the gate looks at
// the stream messages between the floor and a waiting job (StreamKey): longer than
// a batch normally takes, so in normal operation the floor alone decides.
var gateStuck = 250 * time.Millisecond

// gateScanEvery is how often, at most, the gate looks at the stream while the floor
// is stuck.
var gateScanEvery = 50 * time.Millisecond

// gateScanMax bounds how many stream messages one look reads; a job further than
// this above the floor keeps waiting for the floor.
const gateScanMax = 20000

type gated struct {
	job   *Job
	since time.Time
	tries int // claims that skipped it (locked elsewhere)
}

func (g *orderGate) add(jobs []*Job) {
	now := time.Now()
	g.mu.Lock()
	for _, j := range jobs {
		g.waiting = append(g.waiting, &gated{job: j, since: now})
	}
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// runGate lets keyed jobs through the order gate: while any wait, it reads the ack
// floor every gatePoll and claims the jobs it passed (claimGated).
func (d *Dispatcher) runGate(ctx context.Context) {
	defer d.workers.Done()
	for {
		d.gate.mu.Lock()
		n := len(d.gate.waiting)
		d.gate.mu.Unlock()
		if n == 0 {
			select {
			case <-ctx.Done():
				return
			case <-d.gate.wake:
				continue
			}
		}
		floor, ok := d.ackFloor(ctx)
		if ok {
			d.passGate(ctx, floor)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(gatePoll):
		}
	}
}

// ackFloor reads the consumer's ack floor. Without an AckFloor function (a
// dispatcher on its own, in tests of this package) jobs pass after orderSettle.
func (d *Dispatcher) ackFloor(ctx context.Context) (uint64, bool) {
	if d.cfg.AckFloor == nil {
		return 0, true
	}
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	f, err := d.cfg.AckFloor(c)
	if err != nil {
		if ctx.Err() == nil {
			d.log.DebugContext(ctx, "could not read the consumer's ack floor; keyed messages wait", slog.Any("error", err))
		}
		return 0, false
	}
	return f, true
}

func (d *Dispatcher) passGate(ctx context.Context, floor uint64) {
	now := time.Now()
	g := &d.gate
	if floor != g.floor || g.floorSince.IsZero() {
		g.floor, g.floorSince = floor, now
		for s := range g.keys {
			if s <= floor {
				delete(g.keys, s)
			}
		}
	}
	// While the floor is stuck, the stream is looked at every gateScanEvery, not
	// at every poll: a long stuck range costs CPU and queries per look.
	stuck := d.cfg.AckFloor != nil && d.cfg.StreamKey != nil && now.Sub(g.floorSince) > gateStuck &&
		now.Sub(g.lastScan) >= gateScanEvery
	if stuck {
		g.lastScan = now
	}
	var pass []*gated
	d.gate.mu.Lock()
	waiting := append([]*gated(nil), d.gate.waiting...)
	d.gate.mu.Unlock()
	free := map[*gated]bool{}
	if stuck {
		for _, w := range waiting {
			if w.job.OrderSeq > floor && !d.earlierOfKey(ctx, floor, w.job) {
				free[w] = true
			}
		}
	}
	d.gate.mu.Lock()
	keep := d.gate.waiting[:0]
	for _, g := range d.gate.waiting {
		switch {
		case now.Sub(g.since) > d.cfg.Lease*3/4:
			// The row comes due by itself after the lease: the sweep has it.
		case d.cfg.AckFloor == nil && now.Sub(g.since) >= orderSettle, d.cfg.AckFloor != nil && g.job.OrderSeq <= floor, free[g]:
			pass = append(pass, g)
		default:
			keep = append(keep, g)
		}
	}
	clear(d.gate.waiting[len(keep):])
	d.gate.waiting = keep
	d.gate.mu.Unlock()
	if len(pass) == 0 {
		return
	}
	ids := make([]uuid.UUID, len(pass))
	for i, g := range pass {
		ids[i] = g.job.ID
	}
	claimedAt := time.Now()
	token, claimed, looked, parked, err := d.cfg.Store.claimGated(ctx, ids, d.cfg.Lease)
	if err != nil && ctx.Err() == nil {
		d.log.WarnContext(ctx, "error claiming keyed messages at the order gate; they are claimed after the lease", slog.Any("error", err))
	}
	d.recheckParked(parked)
	var again []*gated
	for _, g := range pass {
		j := g.job
		switch {
		case claimed[j.ID]:
			d.am.orderingWait.Observe(claimedAt.Sub(j.AcceptedAt).Seconds())
			j.Token, j.deadline = token, claimedAt.Add(d.cfg.Lease*3/4)
			d.submit(j)
		case looked[j.ID] || err != nil:
			// Parked behind its key's head (the trigger wakes it), or left to the
			// sweep after the lease.
		default:
			// Locked elsewhere this instant (the trigger of a transaction deleting
			// its key's head), or gone: look again, until the time limit above.
			g.tries++
			again = append(again, g)
		}
	}
	if len(again) > 0 {
		d.gate.mu.Lock()
		d.gate.waiting = append(d.gate.waiting, again...)
		d.gate.mu.Unlock()
	}
}

// recheckDelays are when rows a claim just parked are checked again
// (unparkHeadsSQL; the claim checked them once already): a head that was being
// deleted while they were parked is gone by then — on a loaded Postgres a result
// write can take a second, hence the later checks. The 30 s park (parkFor) stays
// the last resort.
var recheckDelays = []time.Duration{20 * time.Millisecond, 200 * time.Millisecond, time.Second, 3 * time.Second}

// recheckParked runs the unpark check on ids after each of recheckDelays, and pokes
// the sweep when it made rows due. It never blocks.
func (d *Dispatcher) recheckParked(ids []uuid.UUID) {
	if len(ids) == 0 {
		return
	}
	ctx := d.sweepCtx
	var at func(i int)
	at = func(i int) {
		time.AfterFunc(recheckDelays[i], func() {
			if ctx.Err() != nil {
				return
			}
			if n, err := d.cfg.Store.unparkHeads(ctx, ids); err == nil && n > 0 {
				d.Poke()
			}
			if i+1 < len(recheckDelays) {
				at(i + 1)
			}
		})
	}
	at(0)
}

// earlierOfKey reports whether a stream message between floor and j (exclusive)
// belongs to j's key and is not taken over yet, or might (the stream or Postgres
// could not say, or the range is longer than gateScanMax): then j waits for the
// floor. Stream messages read are remembered until the floor passes them, so a
// stuck floor costs one read per message.
func (d *Dispatcher) earlierOfKey(ctx context.Context, floor uint64, j *Job) bool {
	if j.OrderSeq-floor > gateScanMax {
		return true
	}
	if d.gate.keys == nil {
		d.gate.keys = map[uint64]string{}
	}
	want := j.Address + "\x00" + j.OrderingKey
	var same []int64
	for seq := floor + 1; seq < j.OrderSeq; seq++ {
		k, ok := d.gate.keys[seq]
		if !ok {
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			addr, key, err := d.cfg.StreamKey(c, seq)
			cancel()
			if err != nil {
				return true
			}
			if key != "" {
				k = addr + "\x00" + key
			}
			d.gate.keys[seq] = k
		}
		if k == want {
			same = append(same, int64(seq))
		}
	}
	if len(same) == 0 {
		return false
	}
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	all, err := d.cfg.Store.takenOver(c, j.Address, j.OrderingKey, same)
	return err != nil || !all
}

// takenOver reports whether messages of (address, key) accepted at every one of
// seqs are recorded (DESIGN §5a: their place in the key is then known to the head
// rule).
func (s *Store) takenOver(ctx context.Context, address, key string, seqs []int64) (bool, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(DISTINCT order_seq) FROM messages
        WHERE ordering_key = $2 AND ai_agent_address = $1 AND order_seq = ANY($3)`, address, key, seqs).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("error looking for earlier messages of a key: %w", err)
	}
	return n == len(seqs), nil
}
