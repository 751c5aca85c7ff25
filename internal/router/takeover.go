package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/consumer"
	"github.com/msgrouter/msgrouter/internal/message"
	"github.com/msgrouter/msgrouter/internal/outbox"
	"github.com/msgrouter/msgrouter/internal/pgtext"
	"github.com/msgrouter/msgrouter/internal/routing"
	"github.com/msgrouter/msgrouter/internal/telemetry"
)

// Lookup is the CAMS client as the takeover uses it.
type Lookup interface {
	Lookup(ctx context.Context, address string) (*mapping.Mapping, error)
	Available() bool
}

// Takeover handles batches from the stream.
type Takeover struct {
	store      *outbox.Store
	cams       Lookup
	dispatcher *outbox.Dispatcher
	log        *slog.Logger
	m          *takeoverMetrics
	// lookups bounds concurrent CAMS lookups of one batch.
	lookups int
	// maxNak caps the delay before a message CAMS could not route comes back.
	maxNak time.Duration
	tracer trace.Tracer
}

// NewTakeover returns the consumer's Handler.
// maxNak caps the redelivery delay of messages CAMS could not route; it should be
// at most the CAMS breaker's open timeout, so messages are back in the stream by
// the time the breaker lets a probe through.
func NewTakeover(store *outbox.Store, c Lookup, d *outbox.Dispatcher, maxNak time.Duration, log *slog.Logger, reg prometheus.Registerer, tp trace.TracerProvider) *Takeover {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return &Takeover{store: store, cams: c, dispatcher: d, log: log, m: newTakeoverMetrics(reg), lookups: 16, maxNak: maxNak,
		tracer: tp.Tracer("github.com/msgrouter/msgrouter/internal/router")}
}

// OnRejected counts a rejection (also used by the dispatcher for replayed messages).
func (t *Takeover) OnRejected(reason string) { t.m.rejected.WithLabelValues(reason).Inc() }

// routeSpan are the start options of every routing span (built once).
var routeSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}

type item struct {
	span    trace.Span // the message's routing span, when it carries a trace
	rec     outbox.Record
	verdict consumer.Action
	routed  bool
	secrets []string
	skip    bool // not taken over in this batch (CAMS unavailable)
	raw     []byte
	// dupOf is 1 + the index of an earlier item of the batch with the same
	// messageId (0: none). The copy is not written: it shares the first's fate.
	dupOf int
}

// nakDelay spaces the redeliveries of a message CAMS could not route: 250ms,
// 500ms, 1s ... up to maxNak (at most 5s). Nak without a delay would redeliver at
// once and turn a CAMS outage into a redelivery storm (FIELD-NOTES); while the
// breaker is open the routers stop pulling altogether, so the cap only bounds how
// soon messages flow again once CAMS answers. MaxDeliver is unlimited, so an outage
// of any length never drops a message.
func (t *Takeover) nakDelay(numDelivered uint64) time.Duration {
	d := 250 * time.Millisecond << min(max(numDelivered, 1)-1, 5)
	return min(d, t.maxNak, 5*time.Second)
}

// Handle takes a batch over. It never returns Ack for a message whose record is not
// committed.
func (t *Takeover) Handle(ctx context.Context, msgs []jetstream.Msg) []consumer.Action {
	items := make([]item, len(msgs))
	defer func() {
		for i := range items {
			if items[i].span != nil {
				items[i].span.End()
			}
		}
	}()
	addrs := map[string]*lookupResult{}
	seen := make(map[uuid.UUID]int, len(msgs))
	for i, msg := range msgs {
		it := &items[i]
		meta, err := msg.Metadata()
		if err != nil {
			// Not a JetStream message: nothing to take over.
			it.skip, it.verdict = true, consumer.Action{Verdict: consumer.Term}
			continue
		}
		env, perr := message.Parse(msg.Data())
		// Sequences restart when the stream is recreated or rebuilt: the id also
		// names the message's storage time, which every replica sees (DESIGN §3).
		id := message.DirectID(msg.Headers().Get("Nats-Msg-Id"), env, message.StoredIdentity(meta.Stream, meta.Timestamp), meta.Sequence.Stream)
		it.rec = outbox.Record{ID: id, AcceptedAt: meta.Timestamp}
		it.raw = msg.Data()
		if first, ok := seen[id]; ok {
			// The same messageId twice in one batch (a direct producer sending
			// the same senderProvidedMessageId twice without Nats-Msg-Id): only
			// the first copy is written and delivered (issue 8, item 2).
			it.dupOf, it.skip = first+1, true
			if env != nil {
				it.rec.Address, it.rec.Payload = env.AIAgentAddress, env.Payload
			}
			continue
		}
		seen[id] = i
		if h := msg.Headers(); h.Get("traceparent") != "" || h.Get("Traceparent") != "" {
			// The routing span continues the producer's trace; the delivery span
			// will be its child, so one trace runs ingest → route → deliver.
			ctx, span := t.tracer.Start(telemetry.ExtractNATS(ctx, h), "msgrouter.route", routeSpan...)
			if span.IsRecording() {
				// Only a recorded span keeps attributes: without an exporter the id is
				// not formatted for nothing (issue 11, lever 9).
				span.SetAttributes(attribute.String("messaging.message.id", id.String()))
			}
			it.span, it.rec.Traceparent = span, telemetry.Traceparent(ctx)
		}
		it.verdict = consumer.Action{Verdict: consumer.Ack}
		if perr != nil {
			it.rec.Status, it.rec.Reason, it.rec.LastError = outbox.StatusRejected, routing.ReasonInvalidMessage, pgtext.Clean(perr.Error(), maxDetailBytes)
			it.rec.Raw = append([]byte(nil), msg.Data()...)
			it.rec.Address = invalidAddress(msg.Data())
			// Recorded and terminated: a poison message is never redelivered.
			it.verdict = consumer.Action{Verdict: consumer.Term}
			continue
		}
		it.rec.Address, it.rec.Payload = env.AIAgentAddress, env.Payload
		it.rec.SenderID, it.rec.CorrelationID, it.rec.SenderMessageID = env.ServiceName(), env.CorrelationID(), env.SenderProvidedMessageID()
		it.rec.OrderingKey, it.rec.OrderSeq = env.OrderingKey(), meta.Sequence.Stream // DESIGN §5a
		if exp, ok := env.ExpiresAt(); ok {
			it.rec.ExpiresAt = exp
		}
		if addrs[env.AIAgentAddress] == nil {
			addrs[env.AIAgentAddress] = &lookupResult{err: errNotLookedUp}
		}
	}

	// Always look up: with the CAMS breaker open each lookup fails at once and the
	// message is handed back. (Deciding "CAMS is down" separately from the lookups
	// races with the breaker opening under another batch.)
	t.lookupAll(ctx, addrs)
	var recs []outbox.Record
	var raws [][]byte
	for i := range items {
		it := &items[i]
		if it.skip || it.rec.Status == outbox.StatusRejected {
			if !it.skip {
				recs, raws = append(recs, it.rec), append(raws, it.raw)
			}
			continue
		}
		lr := addrs[it.rec.Address]
		if lr.err == nil && !lr.dec.Rejected() && lr.dec.DestType == "" {
			lr.err = errors.New("routing produced no destination") // never record PENDING without one
		}
		if lr.err != nil {
			meta, _ := msgs[i].Metadata()
			it.skip, it.verdict = true, consumer.Action{Verdict: consumer.Nak, Delay: t.nakDelay(meta.NumDelivered)}
			t.m.deferred.Inc()
			continue
		}
		if lr.dec.Rejected() {
			// The detail may quote the CAMS answer: made storable.
			it.rec.Status, it.rec.Reason, it.rec.LastError = outbox.StatusRejected, lr.dec.Reason, pgtext.Clean(lr.dec.Detail, maxDetailBytes)
		} else {
			it.rec.Status, it.rec.DestType, it.rec.DestName = outbox.StatusPending, lr.dec.DestType, lr.dec.DestName
			it.routed, it.secrets = true, lr.dec.SigningSecrets
			it.rec.AgentSecrets = len(lr.dec.SigningSecrets) > 0
		}
		recs, raws = append(recs, it.rec), append(raws, it.raw)
	}
	if len(recs) == 0 {
		return t.verdicts(ctx, items)
	}

	token := uuid.New()
	takenAt := time.Now()
	inserted, written, err := t.write(ctx, recs, raws, token)
	if err != nil {
		// Not committed: handed back. (Poison messages too: they are recorded
		// once Postgres answers.)
		t.log.WarnContext(ctx, "error taking messages over; they will be redelivered", slog.Int("messages", len(recs)-countTrue(written)), slog.Any("error", err))
	}
	var known []outbox.Record
	var jobs []*outbox.Job
	k := 0
	for i := range items {
		it := &items[i]
		if it.skip {
			continue
		}
		rec, ok := recs[k], written[k]
		k++
		if !ok {
			it.verdict = consumer.Action{Verdict: consumer.Nak, Delay: 2 * time.Second}
			continue
		}
		if rec.Reason != it.rec.Reason {
			// Postgres refused a field of it: recorded as INVALID_MESSAGE instead.
			it.routed, it.verdict = false, consumer.Action{Verdict: consumer.Term}
		}
		it.rec = rec
		if !inserted[it.rec.ID] {
			t.m.duplicates.Inc()
			known = append(known, it.rec)
			continue
		}
		t.m.takenOver.Inc()
		if it.rec.Status == outbox.StatusRejected {
			t.OnRejected(it.rec.Reason)
			t.log.InfoContext(ctx, "message rejected", slog.String("message_id", it.rec.ID.String()), slog.String("reason", it.rec.Reason), slog.String("detail", it.rec.LastError))
			continue
		}
		t.m.lag.Observe(takenAt.Sub(it.rec.AcceptedAt).Seconds())
		jobs = append(jobs, t.dispatcher.NewJob(outbox.Claimed{
			ID: it.rec.ID, Token: token, Address: it.rec.Address, DestType: it.rec.DestType, DestName: it.rec.DestName,
			Payload: it.rec.Payload, SenderID: it.rec.SenderID, CorrelationID: it.rec.CorrelationID,
			SenderMessageID: it.rec.SenderMessageID, Traceparent: it.rec.Traceparent, AcceptedAt: it.rec.AcceptedAt,
			OrderingKey: it.rec.OrderingKey, OrderSeq: it.rec.OrderSeq, ExpiresAt: it.rec.ExpiresAt, Hold: addrs[it.rec.Address].dec.Hold,
		}, takenAt, it.secrets, true))
	}
	if len(jobs) > 0 {
		// After the acks (the rows are committed and leased): when a destination's
		// lane is full, Handoff waits for room, so this worker takes its next batch
		// only as fast as the inboxes take messages (backpressure, outbox/lanes.go)
		// while JetStream already has its acks.
		consumer.AfterAck(ctx, func() { t.dispatcher.Handoff(ctx, jobs...) })
	}
	t.checkConflicts(ctx, known)
	return t.verdicts(ctx, items)
}

// maxDetailBytes bounds a rejection detail stored with a message.
const maxDetailBytes = 1000

// write takes recs over in one statement. Should Postgres refuse the statement for
// a data reason (a field it cannot store: DESIGN §2 says none gets this far, this
// is the safety net), the batch is split in halves until the good records are
// written, and a record refused on its own is written instead as
// REJECTED/INVALID_MESSAGE with its raw bytes, so one bad row never holds the
// others back and still ends visible (issue 8, item 1). written[i] reports whether
// recs[i] is committed (new or already known; recs[i] is replaced by what was
// written). A transient error (Postgres unreachable) stops at once and is
// returned; the records not written go back to the stream.
func (t *Takeover) write(ctx context.Context, recs []outbox.Record, raws [][]byte, token uuid.UUID) (map[uuid.UUID]bool, []bool, error) {
	inserted := make(map[uuid.UUID]bool, len(recs))
	written := make([]bool, len(recs))
	bared := map[int]bool{}
	var split func(lo, hi int) error
	split = func(lo, hi int) error {
		ins, _, err := t.store.Takeover(ctx, recs[lo:hi], token, t.dispatcher.Lease())
		if err == nil {
			maps.Copy(inserted, ins)
			for i := lo; i < hi; i++ {
				written[i] = true
			}
			return nil
		}
		if !outbox.IsDataError(err) {
			return err
		}
		if hi-lo > 1 {
			mid := (lo + hi) / 2
			if err := split(lo, mid); err != nil {
				return err
			}
			return split(mid, hi)
		}
		if bared[lo] {
			// Already the bare record, and still refused: nothing more to strip.
			t.log.ErrorContext(ctx, "Postgres refuses even the bare record of a message; it stays in the stream",
				slog.String("message_id", recs[lo].ID.String()), slog.Any("error", err))
			return nil
		}
		t.log.WarnContext(ctx, "Postgres refused a field of a message; it is recorded as INVALID_MESSAGE",
			slog.String("message_id", recs[lo].ID.String()), slog.Any("error", err))
		recs[lo], bared[lo] = bareRecord(recs[lo], raws[lo], err), true
		return split(lo, hi)
	}
	err := split(0, len(recs))
	return inserted, written, err
}

// bareRecord is what is kept of a message Postgres refused: its id, time, raw bytes
// (the stream message as received, for inspection) and a storable address and
// reason; nothing else that came from outside.
func bareRecord(r outbox.Record, raw []byte, cause error) outbox.Record {
	return outbox.Record{
		ID: r.ID, AcceptedAt: r.AcceptedAt, Status: outbox.StatusRejected, Reason: routing.ReasonInvalidMessage,
		Address:   pgtext.Clean(r.Address, message.MaxAddressBytes),
		LastError: pgtext.Clean("a field of this message cannot be stored: "+cause.Error(), maxDetailBytes),
		Raw:       append([]byte(nil), raw...),
	}
}

// checkConflicts counts and logs known messages submitted again with another
// address or payload under the same messageId (an idempotency key reused for a
// different message; DESIGN §2). It only observes: the first submission won.
func (t *Takeover) checkConflicts(ctx context.Context, known []outbox.Record) {
	if len(known) == 0 {
		return
	}
	ids, err := t.store.Conflicts(ctx, known)
	if err != nil {
		t.log.DebugContext(ctx, "could not compare known messages for idempotency conflicts", slog.Any("error", err))
		return
	}
	for _, id := range ids {
		t.conflict(ctx, id, "the stored message")
	}
}

func (t *Takeover) conflict(ctx context.Context, id uuid.UUID, with string) {
	t.m.conflicts.Inc()
	t.log.WarnContext(ctx, "idempotency key reused for a different message: the first submission wins, this one is dropped",
		slog.String("message_id", id.String()), slog.String("differs_from", with))
}

func countTrue(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

// verdicts returns one Action per item; a copy of an earlier item of the batch gets
// the first's verdict (Nak'd together, acked together), and is counted as a
// duplicate, and as an idempotency conflict when its address or payload differ.
func (t *Takeover) verdicts(ctx context.Context, items []item) []consumer.Action {
	out := make([]consumer.Action, len(items))
	for i := range items {
		it := &items[i]
		out[i] = it.verdict
		if it.dupOf == 0 {
			continue
		}
		first := &items[it.dupOf-1]
		out[i] = first.verdict
		if first.verdict.Verdict == consumer.Term {
			out[i] = consumer.Action{Verdict: consumer.Ack}
		}
		if first.verdict.Verdict != consumer.Nak {
			t.m.duplicates.Inc()
			if first.rec.Payload != nil && (it.rec.Address != first.rec.Address || !bytes.Equal(it.rec.Payload, first.rec.Payload)) {
				t.conflict(ctx, it.rec.ID, "an earlier copy in the same batch")
			}
		}
	}
	return out
}

var errNotLookedUp = errors.New("agent not looked up")

type lookupResult struct {
	dec routing.Decision
	err error
}

// lookupAll resolves the batch's distinct addresses concurrently (the client's cache
// and singleflight make a burst for one agent cost one lookup).
func (t *Takeover) lookupAll(ctx context.Context, addrs map[string]*lookupResult) {
	var g errgroup.Group
	g.SetLimit(t.lookups)
	var mu sync.Mutex
	for addr, lr := range addrs {
		g.Go(func() error {
			dec, derr := routing.Route(ctx, t.cams.Lookup, addr)
			mu.Lock()
			lr.dec, lr.err = dec, derr
			mu.Unlock()
			if derr != nil && !errors.Is(derr, context.Canceled) {
				t.log.DebugContext(ctx, "CAMS lookup failed; messages wait in the stream", slog.Any("error", derr))
			}
			return nil
		})
	}
	_ = g.Wait()
}

// invalidAddress recovers the address of an unparseable message when it can, so
// the record says whom it was for; otherwise "".
func invalidAddress(data []byte) string {
	var probe struct {
		AIAgentAddress any `json:"aiAgentAddress"`
	}
	if err := json.Unmarshal(data, &probe); err == nil {
		if s, ok := probe.AIAgentAddress.(string); ok && len(s) <= message.MaxAddressBytes {
			// Kept for inspection, made storable: the address may be why the
			// message is invalid (U+0000, a control character).
			return pgtext.Clean(s, message.MaxAddressBytes)
		}
	}
	return ""
}

type takeoverMetrics struct {
	takenOver  prometheus.Counter
	duplicates prometheus.Counter
	deferred   prometheus.Counter
	rejected   *prometheus.CounterVec
	conflicts  prometheus.Counter
	lag        prometheus.Histogram
}

func newTakeoverMetrics(reg prometheus.Registerer) *takeoverMetrics {
	f := promauto.With(reg)
	return &takeoverMetrics{
		takenOver: f.NewCounter(prometheus.CounterOpts{
			Name: "msgrouter_router_messages_taken_over_total",
			Help: "Messages durably taken over from the stream (record committed).",
		}),
		duplicates: f.NewCounter(prometheus.CounterOpts{
			Name: "msgrouter_router_duplicates_total",
			Help: "Stream messages already taken over (redeliveries, duplicate submissions).",
		}),
		deferred: f.NewCounter(prometheus.CounterOpts{
			Name: "msgrouter_router_routing_deferred_total",
			Help: "Messages left in the stream because CAMS could not answer.",
		}),
		rejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "msgrouter_router_messages_rejected_total",
			Help: "Messages rejected at routing, by reason.",
		}, []string{"reason"}),
		conflicts: f.NewCounter(prometheus.CounterOpts{
			Name: "msgrouter_idempotency_conflicts_total",
			Help: "Messages whose messageId (an idempotency key) was already used by a message with another aiAgentAddress or payload; the first one wins (DESIGN §2).",
		}),
		lag: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "msgrouter_router_takeover_lag_seconds",
			Help:    "Time from acceptance (JetStream storage) to the takeover commit.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}),
	}
}
