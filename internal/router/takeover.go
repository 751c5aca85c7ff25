// Package router is the router service: it takes messages over from the stream
// (parse, look the agent up, decide, write message records and outbox rows in one
// statement, then ack), hands the new rows to the outbox dispatcher in-process, and
// serves the admin API. Run wires it all from configuration.
package router

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"

	"github.com/msgrouter/msgrouter/internal/cams"
	"github.com/msgrouter/msgrouter/internal/consumer"
	"github.com/msgrouter/msgrouter/internal/message"
	"github.com/msgrouter/msgrouter/internal/outbox"
	"github.com/msgrouter/msgrouter/internal/routing"
	"github.com/msgrouter/msgrouter/internal/telemetry"
)

// Lookup is the CAMS client as the takeover uses it.
type Lookup interface {
	Lookup(ctx context.Context, address string) (*cams.Mapping, error)
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
	// streamIdentity names this incarnation of the stream for messageIds derived
	// from a sequence number: the stream's name and creation time. Sequences start
	// again at 1 when a stream is recreated (its store lost, or deleted by an
	// operator); with the name alone, new messages would get the ids of old ones
	// and be dropped as duplicates by Postgres.
	streamIdentity atomic.Pointer[string]
}

// SetStream records the stream's identity (name and creation time).
func (t *Takeover) SetStream(name string, created time.Time) {
	id := name + "@" + created.UTC().Format(time.RFC3339Nano)
	t.streamIdentity.Store(&id)
}

func (t *Takeover) streamName(fallback string) string {
	if id := t.streamIdentity.Load(); id != nil {
		return *id
	}
	return fallback
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

type item struct {
	span    trace.Span // the message's routing span, when it carries a trace
	rec     outbox.Record
	verdict consumer.Action
	routed  bool
	secrets []string
	skip    bool // not taken over in this batch (CAMS unavailable)
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
	for i, msg := range msgs {
		it := &items[i]
		meta, err := msg.Metadata()
		if err != nil {
			// Not a JetStream message: nothing to take over.
			it.skip, it.verdict = true, consumer.Action{Verdict: consumer.Term}
			continue
		}
		env, perr := message.Parse(msg.Data())
		id := message.DirectID(msg.Headers().Get("Nats-Msg-Id"), env, t.streamName(meta.Stream), meta.Sequence.Stream)
		it.rec = outbox.Record{ID: id, AcceptedAt: meta.Timestamp}
		if h := msg.Headers(); h.Get("traceparent") != "" || h.Get("Traceparent") != "" {
			// The routing span continues the producer's trace; the delivery span
			// will be its child, so one trace runs ingest → route → deliver.
			ctx, span := t.tracer.Start(telemetry.ExtractNATS(ctx, h), "msgrouter.route",
				trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attribute.String("messaging.message.id", id.String())))
			it.span, it.rec.Traceparent = span, telemetry.Traceparent(ctx)
		}
		it.verdict = consumer.Action{Verdict: consumer.Ack}
		if perr != nil {
			it.rec.Status, it.rec.Reason, it.rec.LastError = outbox.StatusRejected, routing.ReasonInvalidMessage, perr.Error()
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
	for i := range items {
		it := &items[i]
		if it.skip || it.rec.Status == outbox.StatusRejected {
			if !it.skip {
				recs = append(recs, it.rec)
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
			it.rec.Status, it.rec.Reason, it.rec.LastError = outbox.StatusRejected, lr.dec.Reason, lr.dec.Detail
		} else {
			it.rec.Status, it.rec.DestType, it.rec.DestName = outbox.StatusPending, lr.dec.DestType, lr.dec.DestName
			it.routed, it.secrets = true, lr.dec.SigningSecrets
			it.rec.AgentSecrets = len(lr.dec.SigningSecrets) > 0
		}
		recs = append(recs, it.rec)
	}
	if len(recs) == 0 {
		return verdicts(items)
	}

	token := uuid.New()
	takenAt := time.Now()
	inserted, _, err := t.store.Takeover(ctx, recs, token, t.dispatcher.Lease())
	if err != nil {
		// Nothing committed: hand everything back, including poison messages
		// (they are recorded once Postgres answers).
		t.log.WarnContext(ctx, "error taking a batch over; it will be redelivered", slog.Int("messages", len(msgs)), slog.Any("error", err))
		out := make([]consumer.Action, len(msgs))
		for i := range out {
			out[i] = consumer.Action{Verdict: consumer.Nak, Delay: 2 * time.Second}
		}
		return out
	}
	var jobs []*outbox.Job
	for i := range items {
		it := &items[i]
		if it.skip {
			continue
		}
		if !inserted[it.rec.ID] {
			t.m.duplicates.Inc()
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
			OrderingKey: it.rec.OrderingKey, ExpiresAt: it.rec.ExpiresAt, Hold: addrs[it.rec.Address].dec.Hold,
		}, takenAt, it.secrets, true))
	}
	t.dispatcher.Handoff(jobs...)
	return verdicts(items)
}

func verdicts(items []item) []consumer.Action {
	out := make([]consumer.Action, len(items))
	for i := range items {
		out[i] = items[i].verdict
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
			m, err := t.cams.Lookup(ctx, addr)
			dec, derr := routing.Decide(m, err)
			mu.Lock()
			lr.dec, lr.err = dec, derr
			mu.Unlock()
			if derr != nil && !errors.Is(err, context.Canceled) {
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
			return s
		}
	}
	return ""
}

type takeoverMetrics struct {
	takenOver  prometheus.Counter
	duplicates prometheus.Counter
	deferred   prometheus.Counter
	rejected   *prometheus.CounterVec
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
		lag: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "msgrouter_router_takeover_lag_seconds",
			Help:    "Time from acceptance (JetStream storage) to the takeover commit.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}),
	}
}
