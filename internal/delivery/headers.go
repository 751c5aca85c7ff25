package delivery

import (
	"net/http"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
)

// NATS header names (DESIGN §5). NATS headers are case-sensitive: these exact
// spellings are the contract.
const (
	NATSHeaderMessageID       = "messageId"
	NATSHeaderAIAgentAddress  = "aiAgentAddress"
	NATSHeaderTimestamp       = "timestampPublished"
	NATSHeaderContentType     = "contentType"
	NATSHeaderSenderID        = "senderId"
	NATSHeaderCorrelationID   = "correlationId"
	NATSHeaderSenderMessageID = "senderProvidedMessageId"
	HeaderTraceparent         = "traceparent"
)

// HTTP header names (DESIGN §5), in canonical form so they can be set on an
// http.Header map directly. HTTP header names are case-insensitive.
const (
	HTTPHeaderMessageID        = "X-Message-Id"
	HTTPHeaderIdempotencyKey   = "Idempotency-Key"
	HTTPHeaderWebhookID        = "Webhook-Id"
	HTTPHeaderWebhookTimestamp = "Webhook-Timestamp"
	HTTPHeaderWebhookSignature = "Webhook-Signature"
	HTTPHeaderAIAgentAddress   = "X-Ai-Agent-Address"
	HTTPHeaderTimestamp        = "X-Timestamp-Published"
	HTTPHeaderContentType      = "Content-Type"
	HTTPHeaderSenderID         = "X-Sender-Id"
	HTTPHeaderCorrelationID    = "X-Correlation-Id"
	HTTPHeaderSenderMessageID  = "X-Sender-Provided-Message-Id"
	HTTPHeaderTraceparent      = "Traceparent"
)

// ContentTypeJSON is the content type of every delivery: the body is the payload.
const ContentTypeJSON = "application/json"

// TimestampLayout is timestampPublished's format: RFC 3339 in UTC, milliseconds, Z.
const TimestampLayout = "2006-01-02T15:04:05.000Z"

// FormatTimestamp formats t as timestampPublished ("2026-11-28T15:04:05.123Z").
func FormatTimestamp(t time.Time) string {
	return t.UTC().Format(TimestampLayout)
}

// natsHeaderCount bounds the headers NATSHeader sets, to size the map once.
const natsHeaderCount = 9

// NATSHeader returns d's attributes as NATS headers: raw UTF-8 values, absent
// optional attributes omitted. Nats-Msg-Id carries the messageId too, so JetStream
// drops a redelivery within the stream's duplicate window.
func NATSHeader(d *Delivery) nats.Header {
	h := make(nats.Header, natsHeaderCount)
	// One backing array for every value slice: one allocation instead of nine.
	b := headerBuilder{h: h, vals: make([]string, 0, natsHeaderCount)}
	b.attributes(d, &natsNames)
	return h
}

// headerNames spells the attributes for one transport; attributes sets them.
type headerNames struct {
	messageID                                [3]string // every header carrying the messageId; "" = unused
	aiAgentAddress, timestamp, contentType   string
	senderID, correlationID, senderMessageID string
	traceparent                              string
}

var natsNames = headerNames{
	messageID:      [3]string{NATSHeaderMessageID, nats.MsgIdHdr},
	aiAgentAddress: NATSHeaderAIAgentAddress, timestamp: NATSHeaderTimestamp,
	contentType: NATSHeaderContentType, senderID: NATSHeaderSenderID,
	correlationID: NATSHeaderCorrelationID, senderMessageID: NATSHeaderSenderMessageID,
	traceparent: HeaderTraceparent,
}

var httpNames = headerNames{
	messageID:      [3]string{HTTPHeaderMessageID, HTTPHeaderIdempotencyKey, HTTPHeaderWebhookID},
	aiAgentAddress: HTTPHeaderAIAgentAddress, timestamp: HTTPHeaderTimestamp,
	contentType: HTTPHeaderContentType, senderID: HTTPHeaderSenderID,
	correlationID: HTTPHeaderCorrelationID, senderMessageID: HTTPHeaderSenderMessageID,
	traceparent: HTTPHeaderTraceparent,
}

// attributes sets d's attributes under n's names: the messageId under each of its
// names, the timestamp when known, the content type never escaped (a media type,
// not an attribute value: "/" would become %2F), absent optional ones omitted.
func (b *headerBuilder) attributes(d *Delivery, n *headerNames) {
	for _, k := range n.messageID {
		if k != "" {
			b.set(k, d.MessageID)
		}
	}
	b.set(n.aiAgentAddress, d.AIAgentAddress)
	if !d.AcceptedAt.IsZero() {
		b.set(n.timestamp, FormatTimestamp(d.AcceptedAt))
	}
	b.raw(n.contentType, ContentTypeJSON)
	b.setOptional(n.senderID, d.SenderID)
	b.setOptional(n.correlationID, d.CorrelationID)
	b.setOptional(n.senderMessageID, d.SenderMessageID)
	b.setOptional(n.traceparent, d.Traceparent)
}

// headerBuilder fills a header map (nats.Header and http.Header are both
// map[string][]string) with single values carved from one backing array.
type headerBuilder struct {
	h      map[string][]string
	vals   []string
	escape bool
}

func (b *headerBuilder) set(k, v string) {
	if b.escape {
		v = url.PathEscape(v)
	}
	b.raw(k, v)
}

func (b *headerBuilder) raw(k, v string) {
	b.vals = append(b.vals, v)
	n := len(b.vals)
	b.h[k] = b.vals[n-1 : n : n] // cap 1: an append elsewhere cannot clobber a neighbour
}

// setOptional sets k only when v is present: absent attributes are omitted.
func (b *headerBuilder) setOptional(k, v string) {
	if v != "" {
		b.set(k, v)
	}
}

// httpHeaderCount bounds the headers HTTPHeader sets (webhook-timestamp and
// webhook-signature included, which the HTTP Deliverer adds per attempt).
const httpHeaderCount = 14

// HTTPHeader returns d's attributes as HTTP headers: every attribute value
// url.PathEscape'd
// (an address may hold any non-space, non-control character; escaping keeps header
// values plain ASCII, and leaves plain addresses unchanged), absent optional
// attributes omitted. webhook-id is always set; signing headers are added by the
// Deliverer because they depend on the attempt's time.
func HTTPHeader(d *Delivery) http.Header {
	h := make(http.Header, httpHeaderCount)
	b := headerBuilder{h: h, vals: make([]string, 0, httpHeaderCount-2), escape: true}
	b.attributes(d, &httpNames)
	return h
}
