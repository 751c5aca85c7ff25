package ingest

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/message"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/telemetry"
)

// postMessage serves POST /v1/messages. Cheap refusals come first (draining, rate,
// content type, declared length) so an overloaded or abused server spends nothing on
// bodies it will refuse; the body is then parsed exactly once.
func (h *Handler) postMessage(w http.ResponseWriter, r *http.Request) {
	ctx := telemetry.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := h.tracer.Start(ctx, RouteMessages, postMessageSpan...)
	defer span.End()
	rep := reply{w: w, span: span}

	if h.refuseDraining(rep) || h.refuseOverRate(rep, r, 1) {
		return
	}
	buf, ok := rep.readJSON(r, h.cfg.MaxMessageBytes, tooLarge)
	defer putBuffer(buf)
	if !ok {
		return
	}
	env, id, ref := h.prepare(buf.Bytes(), auth.CallerFrom(r.Context()), time.Now())
	if ref != nil {
		rep.fail(ref.status, ref.code, ref.msg)
		return
	}
	span.SetAttributes(attribute.String("messaging.message.id", id))

	ack, err := h.publish(ctx, id, env)
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			// MAX_MESSAGE_BYTES is above the server's max_payload: the body is too big
			// for this deployment whatever the setting says.
			rep.fail(http.StatusRequestEntityTooLarge, httpapi.CodePayloadTooLarge, "the message is larger than the NATS server accepts")
			return
		}
		if r.Context().Err() != nil {
			// The client went away; not a failure of ours.
			h.log.DebugContext(ctx, "client gone before the PubAck", "message_id", id, "error", err)
		} else {
			h.pubFail.record(ctx, id, err)
		}
		span.RecordError(err)
		rep.failRetry(http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the queue did not confirm storage in time: the message may or may not have been stored; retry (a retry with a senderProvidedMessageId is always safe)", retryAfterUnavailable)
		return
	}
	sender := senderLabel(auth.CallerFrom(r.Context()))
	h.metrics.accepted.WithLabelValues(sender).Inc()
	h.log.DebugContext(ctx, "message accepted", "message_id", id, "sender", sender, "stream_seq", ack.Sequence, "duplicate", ack.Duplicate)

	span.SetAttributes(attribute.Int("http.response.status_code", http.StatusAccepted))
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(http.StatusAccepted)
	// The body's buffer is free again (Parse copied what it keeps) and goes back to
	// the pool after Write has copied the answer.
	buf.Reset()
	buf.WriteString(`{"messageId":"`)
	buf.WriteString(id)
	buf.WriteString("\"}\n")
	_, _ = w.Write(buf.Bytes())
}

// Allocated once rather than per request (issue 11, lever 3: ingest CPU per message).
var (
	// postMessageSpan: RouteMessages only matches POST, so the method is a constant.
	postMessageSpan = []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", http.MethodPost), attribute.String("http.route", "/v1/messages")),
	}
	// contentTypeJSON is shared by every response header map; net/http only reads it.
	contentTypeJSON = []string{"application/json"}
	// expectStream is the publish option of every submission (a closure; stateless).
	expectStream = jetstream.WithExpectStream(stream.Name)
)

// refusal is why one submitted message is refused: its HTTP status and the
// contract's error body (DESIGN §2).
type refusal struct {
	status    int
	code, msg string
}

// prepare validates one submitted message as caller sends it at now and returns
// its envelope and messageId, or why it is refused. Shared by the single and the
// batch route, so an item of a batch is judged exactly as a message on its own.
// Every text field it accepts is storable in Postgres (message.Validate).
func (h *Handler) prepare(body []byte, caller auth.Caller, now time.Time) (*message.Envelope, string, *refusal) {
	env, err := message.Parse(body)
	if err != nil {
		return nil, "", &refusal{http.StatusBadRequest, httpapi.CodeInvalidRequest, err.Error()}
	}
	// DESIGN §2, §5a: a message that is already expired could never be delivered.
	if t, ok := env.ExpiresAt(); ok && !t.After(now) {
		return nil, "", &refusal{http.StatusBadRequest, httpapi.CodeInvalidRequest, "senderMetadata.expiresAt is already past"}
	}
	// A named key speaks for one service: it may not pose as another, and its name
	// fills an absent serviceName before the id is derived, so idempotent retries
	// from that key agree on the id whether or not they repeat the name.
	if caller.Named {
		switch sn := env.ServiceName(); {
		case sn == "":
			if env.SenderMetadata == nil {
				env.SenderMetadata = &message.SenderMetadata{}
			}
			env.SenderMetadata.ServiceName = caller.Name
		case sn != caller.Name:
			return nil, "", &refusal{http.StatusForbidden, httpapi.CodeForbidden, "senderMetadata.serviceName does not match the API key's name"}
		}
	}
	uid, _ := env.ID()
	return env, uid.String(), nil
}

// publish stores the envelope and waits for the PubAck, at most PublishTimeout (the
// asynchronous context times its acks out) and no longer than ctx. The span of ctx
// travels in traceparent/tracestate, so the router's spans join the submitter's
// trace.
//
// An asynchronous publish whose future is awaited (issue 11, lever 7 in
// BENCHMARKS.md): the same guarantee as the synchronous request it replaced (a 202
// only after the PubAck) with less work per request: no context.WithTimeout, no
// per-request reply setup; the acks of all requests come back on one wildcard
// subscription. Concurrent requests still pipeline over the one connection.
func (h *Handler) publish(ctx context.Context, id string, env *message.Envelope) (*jetstream.PubAck, error) {
	start := time.Now()
	defer func() { h.metrics.publish.Observe(time.Since(start).Seconds()) }()
	f, err := h.async.PublishMsgAsync(newMsg(ctx, id, env), expectStream)
	if err != nil {
		return nil, err
	}
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		// The client went away; the ack may still come (the message is then
		// stored, as after any 503: a retry is deduplicated by its id).
		return nil, ctx.Err()
	}
}

// newMsg is the stream message of an accepted envelope: under Nats-Msg-Id =
// messageId (JetStream dedupes a retried submission), with the span of ctx in
// traceparent/tracestate so the router's spans join the submitter's trace.
func newMsg(ctx context.Context, id string, env *message.Envelope) *nats.Msg {
	msg := &nats.Msg{Subject: stream.Subject, Data: env.Marshal(), Header: make(nats.Header, 3)}
	msg.Header[jetstream.MsgIDHeader] = []string{id}
	telemetry.InjectNATS(ctx, msg.Header)
	return msg
}

// isJSON accepts application/json and application/*+json with any parameters, and a
// missing Content-Type (DESIGN §2).
func isJSON(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt == "application/json" {
		return true
	}
	sub, ok := strings.CutPrefix(mt, "application/")
	return ok && len(sub) > len("+json") && strings.HasSuffix(sub, "+json") && !strings.ContainsAny(sub, "/ \t")
}

func tooLarge(limit int) string {
	return "the body is larger than MAX_MESSAGE_BYTES (" + itoa(limit) + " bytes)"
}

// Bodies are read into pooled buffers: message.Parse copies what it keeps, so a
// buffer can be reused once the handler returns. Only buffers of typical size go
// back, so one huge body does not pin its memory.
const maxPooledBuffer = 64 << 10

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func readBody(w http.ResponseWriter, r *http.Request, limit int) (*bytes.Buffer, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1) // +1: ReadFrom needs room to see EOF
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, int64(limit)))
	return buf, err
}

// reply answers a request's refusals in the contract's error body and marks its
// span failed with the status and error code.
// refuseDraining answers 503 while the server drains (DESIGN §8.4) and says
// whether it did.
func (h *Handler) refuseDraining(rep reply) bool {
	if !h.draining.Load() {
		return false
	}
	rep.failRetry(http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the server is shutting down; retry on another replica", retryAfterUnavailable)
	return true
}

// refuseOverRate takes n messages from the sender's rate (DESIGN §2: a batch of n
// counts n); over it, it answers 429 with Retry-After and says it did.
func (h *Handler) refuseOverRate(rep reply, r *http.Request, n int) bool {
	ok, after := h.cfg.Limiter.ReserveN(h.senderKey(r), n)
	if !ok {
		rep.failRetry(http.StatusTooManyRequests, httpapi.CodeRateLimited, "too many messages from this sender; retry after the Retry-After delay", after)
	}
	return !ok
}

type reply struct {
	w    http.ResponseWriter
	span trace.Span
}

func (p reply) fail(status int, code, msg string) {
	p.span.SetAttributes(attribute.Int("http.response.status_code", status))
	p.span.SetStatus(codes.Error, code)
	httpapi.WriteError(p.w, status, code, msg)
}

func (p reply) failRetry(status int, code, msg string, after time.Duration) {
	p.span.SetAttributes(attribute.Int("http.response.status_code", status))
	p.span.SetStatus(codes.Error, code)
	httpapi.WriteRetryAfter(p.w, status, code, msg, after)
}

// readJSON checks a JSON request's content type (415) and size (413, with
// tooBig(limit) as the message: declared or read), and reads its body into a pooled
// buffer. It returns false once it has answered a refusal. The buffer, possibly nil,
// goes back with putBuffer in every case.
func (p reply) readJSON(r *http.Request, limit int, tooBig func(int) string) (*bytes.Buffer, bool) {
	if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
		p.fail(http.StatusUnsupportedMediaType, httpapi.CodeUnsupportedMediaType, "Content-Type must be application/json, not "+ct)
		return nil, false
	}
	if r.ContentLength > int64(limit) {
		p.fail(http.StatusRequestEntityTooLarge, httpapi.CodePayloadTooLarge, tooBig(limit))
		return nil, false
	}
	buf, err := readBody(p.w, r, limit)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			p.fail(http.StatusRequestEntityTooLarge, httpapi.CodePayloadTooLarge, tooBig(limit))
			return buf, false
		}
		p.fail(http.StatusBadRequest, httpapi.CodeInvalidRequest, "error reading the body: "+err.Error())
		return buf, false
	}
	return buf, true
}

func putBuffer(b *bytes.Buffer) {
	if b != nil && b.Cap() <= maxPooledBuffer {
		bufPool.Put(b)
	}
}

// senderLabel names who sent a message in logs and metrics: the API key's name
// (operator-configured, so a bounded label), "unnamed" for a bare key, "anonymous"
// when no keys are configured.
func senderLabel(c auth.Caller) string {
	switch {
	case c.Named:
		return c.Name
	case c.Authenticated:
		return "unnamed"
	}
	return "anonymous"
}
