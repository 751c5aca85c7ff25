package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
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
// A gated row is not leased: it comes due after the lease like any row left
// behind. So the gate keeps its rows for as long as it holds them: at a job's
// lease deadline it looks at the stream messages between the ack floor and the
// job (pendingOfKeys) and
//   - renews the row's lease (renewGatedSQL) while an earlier message of the key
//     is there and not taken over: order holds however long that message is held
//     up — a CAMS outage for its address, its Nak delays, a backlog in front of
//     its redelivery (msgrouter_order_gate_renewals_total);
//   - lets the job through when none is;
//   - lets it through on the head rule alone when it cannot tell (the ack floor
//     or the stream or Postgres did not answer, or more than gateScanMax messages
//     lie between the floor and the job), so a key is never held forever by a
//     doubt (msgrouter_order_gate_releases_total, and a warning).
// The deadline is the lease's, counted from the takeover's claim, not from when
// the job reached the gate: Handoff may wait for lane room before it gets there.
//
// A row keeps outbox.gate (migration 0004) until a gate claims or parks it. Rows
// a gate let go of with it set — the gate's replica died or stopped, the lease
// lapsed — are claimed by some sweep, or as a result's successor, with the head
// rule alone; regate gives up those claims and holds the rows at this process's
// gate instead. Replays have no place in the stream and never carry the flag.
//
// The gate's Postgres side (its SQL and Store methods) is in ordergate_store.go.

// gatePoll is how often the ack floor is read while keyed messages wait at the gate.
var gatePoll = 2 * time.Millisecond

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

// gateTries is how many times the gate claims a passed job that was neither
// claimed nor parked (locked elsewhere, gone) before it lets go of it.
const gateTries = 50

type gated struct {
	job   *Job
	since time.Time
	tries int // claims that skipped it (locked elsewhere)
}

// gatedIDs returns the ids of gs's jobs, in gs's order.
func gatedIDs(gs []*gated) []uuid.UUID {
	ids := make([]uuid.UUID, len(gs))
	for i, g := range gs {
		ids[i] = g.job.ID
	}
	return ids
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
		// An unreadable floor (NATS away) tells nothing: the jobs wait, and at
		// their deadlines pass on the head rule alone, as on any doubt.
		floor, ok := d.ackFloor(ctx)
		d.passGate(ctx, floor, ok)
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

func (d *Dispatcher) passGate(ctx context.Context, floor uint64, known bool) {
	now := time.Now()
	g := &d.gate
	if known && (floor != g.floor || g.floorSince.IsZero()) {
		if floor < g.floor {
			// The stream was recreated (sequences restart): what was read of the
			// old one says nothing of the new.
			clear(g.keys)
		}
		g.floor, g.floorSince = floor, now
		for s := range g.keys {
			if s <= floor {
				delete(g.keys, s)
			}
		}
	}
	// While the floor is stuck, the stream is looked at every gateScanEvery, not
	// at every poll: a long stuck range costs CPU and queries per look.
	scan := known && d.cfg.AckFloor != nil && d.cfg.StreamKey != nil
	stuck := scan && now.Sub(g.floorSince) > gateStuck && now.Sub(g.lastScan) >= gateScanEvery
	if stuck {
		g.lastScan = now
	}
	d.gate.mu.Lock()
	waiting := append([]*gated(nil), d.gate.waiting...)
	d.gate.mu.Unlock()
	var look []*gated
	for _, w := range waiting {
		atDeadline := d.cfg.AckFloor != nil && !now.Before(w.job.deadline)
		if known && d.cfg.AckFloor != nil && w.job.OrderSeq <= floor || !stuck && !atDeadline {
			continue
		}
		look = append(look, w)
	}
	state := make(map[*gated]keyState, len(look))
	var pending map[string]uint64
	ok := scan && len(look) > 0
	if ok {
		pending, ok = d.pendingOfKeys(ctx, floor, look)
	}
	for _, w := range look {
		j := w.job
		switch p, held := pending[j.Address+"\x00"+j.OrderingKey]; {
		case !ok || j.OrderSeq-floor > gateScanMax:
			state[w] = keyUnknown
		case held && p < j.OrderSeq:
			state[w] = keyWaits
		default:
			state[w] = keyFree
		}
	}
	var pass, renew, release []*gated
	d.gate.mu.Lock()
	keep := d.gate.waiting[:0]
	for _, g := range d.gate.waiting {
		st, looked := state[g]
		switch {
		case d.cfg.AckFloor == nil && now.Sub(g.since) >= orderSettle, known && d.cfg.AckFloor != nil && g.job.OrderSeq <= floor, looked && st == keyFree:
			pass = append(pass, g)
		case looked && !now.Before(g.job.deadline) && st == keyWaits:
			renew = append(renew, g)
		case looked && !now.Before(g.job.deadline):
			release = append(release, g)
		default:
			keep = append(keep, g)
		}
	}
	clear(d.gate.waiting[len(keep):])
	d.gate.waiting = keep
	d.gate.mu.Unlock()
	d.renewGated(ctx, renew)
	for _, g := range release {
		d.am.gateReleased.Inc()
		d.log.WarnContext(ctx, "a keyed message passes the order gate on the outbox's order alone: the gate could not tell whether an earlier message of its key is still in the stream",
			slog.String("message_id", g.job.ID.String()), slog.Uint64("stream_seq", g.job.OrderSeq), slog.Uint64("ack_floor", floor))
	}
	pass = append(pass, release...)
	if len(pass) == 0 {
		return
	}
	claimedAt := time.Now()
	token, claimed, looked, parked, err := d.cfg.Store.claimGated(ctx, gatedIDs(pass), d.cfg.Lease)
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
		case now.Before(j.deadline) && g.tries < gateTries:
			// Locked elsewhere this instant (the trigger of a transaction deleting
			// its key's head), or gone, or claimed by another replica's sweep: look
			// again a few times. A row still ours comes due after its lease.
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

// renewGated renews the leases of gs's rows and keeps them at the gate with a new
// deadline; a row it could not renew is left to whoever has it now (the sweep).
func (d *Dispatcher) renewGated(ctx context.Context, gs []*gated) {
	if len(gs) == 0 {
		return
	}
	renewedAt := time.Now()
	renewed, err := d.cfg.Store.renewGated(ctx, gatedIDs(gs), d.cfg.Lease)
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "error renewing the leases of keyed messages at the order gate; they are claimed after the lease", slog.Any("error", err))
		}
		return
	}
	var keep []*gated
	for _, g := range gs {
		if renewed[g.job.ID] {
			g.job.deadline = renewedAt.Add(d.cfg.Lease * 3 / 4)
			keep = append(keep, g)
		}
	}
	d.am.gateRenewed.Add(float64(len(keep)))
	d.gate.mu.Lock()
	d.gate.waiting = append(d.gate.waiting, keep...)
	d.gate.mu.Unlock()
}

// regate returns jobs (claimed by the sweep, or as the successors of results)
// without those no order gate has passed yet (outbox.gate, migration 0004): rows a
// gate let go of — held in a replica that died or stopped, or whose lease lapsed —
// which the head rule that claimed them cannot see an earlier message of their
// key still in the stream for. Their leases are given up and they wait at this
// process's gate like a takeover's (DESIGN §5a). On an error they are dropped:
// their rows come back after the lease.
func (d *Dispatcher) regate(ctx context.Context, jobs []*Job) []*Job {
	if d.cfg.AckFloor == nil || d.stopping.Load() {
		return jobs
	}
	var back []*Job
	keep := make([]*Job, 0, len(jobs))
	for _, j := range jobs {
		if j.Gate {
			back = append(back, j)
			continue
		}
		keep = append(keep, j)
	}
	if len(back) == 0 {
		return jobs
	}
	ids, tokens := make([]uuid.UUID, len(back)), make([]uuid.UUID, len(back))
	for i, j := range back {
		ids[i], tokens[i] = j.ID, j.Token
	}
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	releasedAt := time.Now()
	released, err := d.cfg.Store.releaseToGate(c, ids, tokens, d.cfg.Lease)
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "error sending keyed messages back to the order gate; they are claimed after the lease", slog.Any("error", err))
		}
		return keep
	}
	mine := make(map[uuid.UUID]bool, len(released))
	for _, id := range released {
		mine[id] = true
	}
	var gate []*Job
	for _, j := range back {
		if mine[j.ID] {
			j.deadline = releasedAt.Add(d.cfg.Lease * 3 / 4)
			gate = append(gate, j)
		}
	}
	if len(gate) > 0 {
		d.gate.add(gate)
	}
	return keep
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

// keyState is what the gate knows of the stream messages between the ack floor
// and a waiting job.
type keyState int

const (
	keyFree    keyState = iota // none of them is of the job's key and not taken over
	keyWaits                   // one of them is of its key and not taken over yet
	keyUnknown                 // the stream or Postgres did not say, or the range is too long
)

// gateReaders bounds the stream reads readKeys has in flight.
const gateReaders = 16

// ErrNoStreamMessage is what Config.StreamKey returns when the stream has no
// message at a sequence: deleted (limits, a purge), or not written yet.
var ErrNoStreamMessage = errors.New("no stream message at this sequence")

// StreamKeyOf returns a Config.StreamKey reading stream st (one JetStream get per
// call): parse returns a message's address and ordering key; a message it cannot
// parse is never delivered (the takeover terminates it), so it holds no key
// back ("" and no error). A sequence with no message is ErrNoStreamMessage.
func StreamKeyOf(st interface {
	GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error)
}, parse func(data []byte) (address, key string, err error)) func(ctx context.Context, seq uint64) (string, string, error) {
	return func(ctx context.Context, seq uint64) (string, string, error) {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return "", "", ErrNoStreamMessage
		}
		if err != nil {
			return "", "", err
		}
		addr, key, err := parse(m.Data)
		if err != nil {
			return "", "", nil
		}
		return addr, key, nil
	}
}

// readKeys reads the (address, key) of the stream messages between floor and upTo
// (exclusive) that the gate has not read yet, gateReaders at a time: one round
// trip each, so a long stuck range is read in a fraction of the time one by one
// would take. What it reads is kept until the floor passes it, except "no message"
// above the last message found: those sequences may be written later (or the job
// is from a stream since recreated) and are read again next time. False when the
// stream did not answer for one of them.
func (d *Dispatcher) readKeys(ctx context.Context, floor, upTo uint64) bool {
	if d.gate.keys == nil {
		d.gate.keys = map[uint64]string{}
	}
	var missing []uint64
	for seq := floor + 1; seq < upTo; seq++ {
		if _, ok := d.gate.keys[seq]; !ok {
			missing = append(missing, seq)
		}
	}
	if len(missing) == 0 {
		return true
	}
	const (
		unread = iota
		found
		none
	)
	keys := make([]string, len(missing))
	got := make([]int, len(missing))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(gateReaders)
	for i, seq := range missing {
		g.Go(func() error {
			c, cancel := context.WithTimeout(gctx, 2*time.Second)
			defer cancel()
			addr, key, err := d.cfg.StreamKey(c, seq)
			switch {
			case errors.Is(err, ErrNoStreamMessage):
				got[i] = none
				return nil
			case err != nil:
				return fmt.Errorf("stream message %d: %w", seq, err)
			}
			if key != "" {
				keys[i] = addr + "\x00" + key
			}
			got[i] = found
			return nil
		})
	}
	err := g.Wait()
	// What was read is kept, also when a read failed: the next look reads only the
	// rest, so a long range is read to the end even when reads fail now and then.
	last := -1
	for i := range missing {
		if got[i] == found {
			last = i
		}
	}
	for i, seq := range missing {
		if got[i] == found || got[i] == none && i < last {
			d.gate.keys[seq] = keys[i]
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			d.log.DebugContext(ctx, "could not read the stream messages holding the ack floor back; keyed messages wait", slog.Any("error", err))
		}
		return false
	}
	return true
}

// pendingOfKeys returns, for the keys of the jobs in look, the lowest sequence
// between floor and the job of a stream message of that key not taken over yet
// (no entry: none). One pass over the range and one Postgres query per look,
// whatever the number of jobs; a message found taken over is forgotten (its key
// set to ""), so it is never asked about again. False when the stream or Postgres
// did not answer.
func (d *Dispatcher) pendingOfKeys(ctx context.Context, floor uint64, look []*gated) (map[string]uint64, bool) {
	upTo := map[string]uint64{} // key → the highest job of it to look below
	var top uint64
	for _, w := range look {
		j := w.job
		if j.OrderSeq-floor > gateScanMax {
			continue
		}
		k := j.Address + "\x00" + j.OrderingKey
		upTo[k] = max(upTo[k], j.OrderSeq)
		top = max(top, j.OrderSeq)
	}
	if len(upTo) == 0 || !d.readKeys(ctx, floor, top) {
		return nil, len(upTo) == 0
	}
	var addrs, keys []string
	var seqs []int64
	for seq := floor + 1; seq < top; seq++ {
		k := d.gate.keys[seq] // absent: no message there yet
		if lim, ok := upTo[k]; ok && k != "" && seq < lim {
			addr, key, _ := strings.Cut(k, "\x00")
			addrs, keys, seqs = append(addrs, addr), append(keys, key), append(seqs, int64(seq))
		}
	}
	pending := map[string]uint64{}
	if len(seqs) == 0 {
		return pending, true
	}
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	in, err := d.cfg.Store.takenOver(c, addrs, keys, seqs)
	if err != nil {
		if ctx.Err() == nil {
			d.log.DebugContext(ctx, "could not look for earlier messages of keys; keyed messages wait", slog.Any("error", err))
		}
		return nil, false
	}
	for i, seq := range seqs {
		if in[seq] {
			d.gate.keys[uint64(seq)] = ""
			continue
		}
		k := addrs[i] + "\x00" + keys[i]
		if p, ok := pending[k]; !ok || uint64(seq) < p {
			pending[k] = uint64(seq)
		}
	}
	return pending, true
}
