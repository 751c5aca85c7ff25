package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/telemetry"
)

// RouteBatch is the pattern of the batch route (DESIGN §2).
const RouteBatch = "POST /v1/messages/batch"

// Limits of a batch (DESIGN §2).
const (
	MaxBatchItems = 1000
	// batchWindow bounds the publishes of one batch waiting for their PubAck at
	// once: enough to keep the stream busy, little enough that concurrent batches
	// share the connection's async window (asyncMaxPending) fairly.
	batchWindow = 128
	// asyncMaxPending bounds the asynchronous publishes awaiting a PubAck across
	// all requests (a single message counts one, a batch up to batchWindow); a
	// publish beyond it waits up to 200ms for room, then fails (503, or the item
	// answers UNAVAILABLE).
	asyncMaxPending = 4096
)

// reasonByCode maps an item's error code onto its rejection reason.
var reasonByCode = map[string]string{
	httpapi.CodeInvalidRequest:  ReasonInvalid,
	httpapi.CodeForbidden:       ReasonForbidden,
	httpapi.CodePayloadTooLarge: ReasonTooLarge,
	httpapi.CodeUnavailable:     ReasonUnavailable,
}

// BatchResult is one item's answer in a batch: MessageID once its PubAck arrived,
// or the single-message error body (ErrorCode, Message).
type BatchResult struct {
	MessageID string `json:"messageId,omitempty"`
	ErrorCode string `json:"errorCode,omitempty"`
	Message   string `json:"message,omitempty"`
}

// postBatch serves POST /v1/messages/batch: {"messages": [...]} of 1 to 1000 items,
// each validated exactly as POST /v1/messages would and published asynchronously
// (at most batchWindow awaiting their PubAck), answered together, 200
// {"results": [...]} in request order. Items are independent: one bad item never
// fails the others. The whole request is refused only for what concerns it as a
// whole: draining (503), the sender's rate (429, a batch of n counts n), content
// type (415), size over MaxBatchBytes (413), a body not of that shape (400).
func (h *Handler) postBatch(w http.ResponseWriter, r *http.Request) {
	ctx := telemetry.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := h.tracer.Start(ctx, RouteBatch, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", "/v1/messages/batch")))
	defer span.End()
	rep := reply{w: w, span: span}

	if h.refuseDraining(rep) {
		return
	}
	buf, ok := rep.readJSON(r, h.cfg.MaxBatchBytes, batchTooLarge)
	defer putBuffer(buf)
	if !ok {
		return
	}
	items, msg := decodeBatch(buf.Bytes())
	if msg != "" {
		rep.fail(http.StatusBadRequest, httpapi.CodeInvalidRequest, msg)
		return
	}
	span.SetAttributes(attribute.Int("messaging.batch.message_count", len(items)))
	// The rate is checked once the size of the batch is known: n messages cost n.
	if h.refuseOverRate(rep, r, len(items)) {
		return
	}

	caller := auth.CallerFrom(r.Context())
	sender := senderLabel(caller)
	now := time.Now()
	results := make([]BatchResult, len(items))
	// Valid items are published asynchronously in request order, at most
	// batchWindow awaiting their PubAck at once; each is answered by its own ack.
	var window []pending
	for i, raw := range items {
		res := &results[i]
		if len(raw) > h.cfg.MaxMessageBytes {
			res.ErrorCode, res.Message = httpapi.CodePayloadTooLarge, "the message is larger than MAX_MESSAGE_BYTES ("+itoa(h.cfg.MaxMessageBytes)+" bytes)"
			continue
		}
		env, id, ref := h.prepare(raw, caller, now)
		if ref != nil {
			res.ErrorCode, res.Message = ref.code, ref.msg
			continue
		}
		if len(window) == batchWindow {
			h.await(ctx, r, window[0], sender)
			window = window[1:]
		}
		start := time.Now()
		f, err := h.async.PublishMsgAsync(newMsg(ctx, id, env), expectStream)
		p := pending{res: res, id: id, future: f, start: start}
		if err != nil {
			h.publishFailed(ctx, r, p, err)
			continue
		}
		window = append(window, p)
	}
	for _, p := range window {
		h.await(ctx, r, p, sender)
	}
	for i := range results {
		if c := results[i].ErrorCode; c != "" {
			h.metrics.rejected.WithLabelValues(reasonByCode[c]).Inc()
		}
	}

	span.SetAttributes(attribute.Int("http.response.status_code", http.StatusOK))
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Results []BatchResult `json:"results"`
	}{results})
}

// pending is an item of a batch awaiting its PubAck.
type pending struct {
	res    *BatchResult
	id     string
	future jetstream.PubAckFuture
	start  time.Time
}

// await waits for p's PubAck (at most PublishTimeout: the async context times its
// acks out) and fills its result.
func (h *Handler) await(ctx context.Context, r *http.Request, p pending, sender string) {
	select {
	case ack := <-p.future.Ok():
		h.metrics.publish.Observe(time.Since(p.start).Seconds())
		p.res.MessageID = p.id
		h.metrics.accepted.WithLabelValues(sender).Inc()
		h.log.DebugContext(ctx, "message accepted", "message_id", p.id, "sender", sender, "stream_seq", ack.Sequence, "duplicate", ack.Duplicate, "batch", true)
	case err := <-p.future.Err():
		h.metrics.publish.Observe(time.Since(p.start).Seconds())
		h.publishFailed(ctx, r, p, err)
	case <-r.Context().Done():
		// The client went away: nobody reads the answer. The ack may still come;
		// the item is then stored, as a single message would be.
		h.publishFailed(ctx, r, p, r.Context().Err())
	}
}

func (h *Handler) publishFailed(ctx context.Context, r *http.Request, p pending, err error) {
	if errors.Is(err, nats.ErrMaxPayload) {
		p.res.ErrorCode, p.res.Message = httpapi.CodePayloadTooLarge, "the message is larger than the NATS server accepts"
		return
	}
	if r.Context().Err() != nil {
		h.log.DebugContext(ctx, "client gone before the PubAck", "message_id", p.id, "error", err)
	} else {
		h.log.WarnContext(ctx, "error publishing message", "message_id", p.id, "error", err, "batch", true)
	}
	p.res.ErrorCode, p.res.Message = httpapi.CodeUnavailable, "the message was not accepted: the queue did not confirm storage in time; retry"
}

// decodeBatch reads {"messages": [<message>, ...]} and returns the items' raw bytes,
// or why the body is not of that shape (a 400). Items are judged one by one later.
func decodeBatch(body []byte) ([]json.RawMessage, string) {
	var req struct {
		Messages *[]json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field == "messages" {
			return nil, "messages must be an array of messages, not " + typeErr.Value
		}
		if typeErr != nil {
			return nil, `the body must be a JSON object {"messages": [...]}, not ` + typeErr.Value
		}
		return nil, "malformed JSON: " + err.Error()
	}
	switch {
	case req.Messages == nil:
		return nil, `messages is required: the body is {"messages": [<message>, ...]}`
	case len(*req.Messages) == 0:
		return nil, "messages is empty: a batch holds 1 to " + strconv.Itoa(MaxBatchItems) + " messages"
	case len(*req.Messages) > MaxBatchItems:
		return nil, "messages holds " + strconv.Itoa(len(*req.Messages)) + " items: a batch holds at most " + strconv.Itoa(MaxBatchItems)
	}
	if !utf8.Valid(body) {
		// Items are checked one by one (an item that is not UTF-8 fails alone); bytes
		// outside every item that are not UTF-8 make the body malformed.
		bad := false
		for _, it := range *req.Messages {
			bad = bad || !utf8.Valid(it)
		}
		if !bad {
			return nil, "the body is not valid UTF-8"
		}
	}
	return *req.Messages, ""
}

func batchTooLarge(limit int) string {
	return "the body is larger than MAX_BATCH_BYTES (" + itoa(limit) + " bytes)"
}
