// Package message defines the envelope producers submit (DESIGN §2 and §3): how it is
// decoded and validated, and how its messageId is derived. Ingest and router share it
// so both ends agree byte for byte on what a valid message is.
package message

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits of the contract.
const (
	MaxAddressBytes  = 256
	MaxMetadataBytes = 256
)

// Envelope is the body producers send: over HTTP to ingest, or published straight to
// router.messages. Payload keeps the producer's exact bytes.
type Envelope struct {
	AIAgentAddress string          `json:"aiAgentAddress"`
	Payload        json.RawMessage `json:"payload"`
	SenderMetadata *SenderMetadata `json:"senderMetadata,omitempty"`
}

// SenderMetadata is optional; each field is optional ("" = absent).
type SenderMetadata struct {
	ServiceName             string `json:"serviceName,omitempty"`
	CorrelationID           string `json:"correlationId,omitempty"`
	SenderProvidedMessageID string `json:"senderProvidedMessageId,omitempty"`
	// OrderingKey groups messages for one agent that must be delivered in acceptance
	// order, one at a time (DESIGN §5a). "" = unordered.
	OrderingKey string `json:"orderingKey,omitempty"`
	// ExpiresAt is the RFC 3339 instant (with offset) after which the message must
	// never be delivered (DESIGN §5a). "" = never expires.
	ExpiresAt string `json:"expiresAt,omitempty"`
}

// ValidationError says which field is wrong and why; it is the message of a 400.
type ValidationError struct{ Msg string }

func (e *ValidationError) Error() string { return e.Msg }

func invalid(format string, args ...any) error {
	return &ValidationError{Msg: fmt.Sprintf(format, args...)}
}

// noMetadata stands for an absent senderMetadata block: every field absent.
var noMetadata SenderMetadata

// metadata returns the sender block, or an empty one when it is absent. Read only.
func (e *Envelope) metadata() *SenderMetadata {
	if e.SenderMetadata == nil {
		return &noMetadata
	}
	return e.SenderMetadata
}

// ServiceName returns the sender's service name, "" when absent.
func (e *Envelope) ServiceName() string {
	return e.metadata().ServiceName
}

// CorrelationID returns the correlation id, "" when absent.
func (e *Envelope) CorrelationID() string {
	return e.metadata().CorrelationID
}

// SenderProvidedMessageID returns the sender's own message id, "" when absent.
func (e *Envelope) SenderProvidedMessageID() string {
	return e.metadata().SenderProvidedMessageID
}

// OrderingKey returns the ordering key (DESIGN §5a), "" when absent.
func (e *Envelope) OrderingKey() string {
	return e.metadata().OrderingKey
}

// ExpiresAt returns the instant after which the message must not be delivered
// (DESIGN §5a) and true, or the zero time and false when the message never expires.
// Validate has already refused a malformed value, so a parse failure here reads as
// "never expires" only for envelopes that were never validated.
func (e *Envelope) ExpiresAt() (time.Time, bool) {
	if e.SenderMetadata == nil || e.SenderMetadata.ExpiresAt == "" {
		return time.Time{}, false
	}
	t, err := ParseExpiresAt(e.SenderMetadata.ExpiresAt)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// ParseExpiresAt parses senderMetadata.expiresAt: RFC 3339 with an explicit offset
// ("Z" or "±hh:mm"), fractional seconds allowed (DESIGN §2). The result is in UTC.
func ParseExpiresAt(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil { // Go's RFC 3339 layout requires the offset
		return time.Time{}, invalid("senderMetadata.expiresAt must be an RFC 3339 time with an offset, such as 2026-12-01T10:00:00Z")
	}
	return t.UTC(), nil
}

// Parse decodes and validates body. Any failure is a *ValidationError.
func Parse(body []byte) (*Envelope, error) {
	if !utf8.Valid(body) {
		return nil, invalid("the body is not valid UTF-8")
	}
	env, ok := decodeFast(body)
	if !ok {
		env = new(Envelope)
		if err := json.Unmarshal(body, env); err != nil {
			return nil, decodeError(err)
		}
	}
	if err := env.Validate(); err != nil {
		return nil, err
	}
	return env, nil
}

func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return invalid("%s must be a %s, not %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return invalid("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	}
	if typeErr != nil {
		return invalid("the body must be a JSON object, not %s", typeErr.Value)
	}
	return invalid("malformed JSON: %v", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "struct", "ptr", "map":
		return "object"
	}
	return goKind
}

// Validate checks the fields against the contract (DESIGN §2). Every text field it
// accepts is storable in Postgres (valid UTF-8, no U+0000; internal/pgtext); the
// payload is kept as raw bytes (bytea), so U+0000 escaped inside it is fine.
func (e *Envelope) Validate() error {
	if err := ValidateAddress(e.AIAgentAddress); err != nil {
		return err
	}
	p := bytes.TrimLeft(e.Payload, " \t\r\n")
	if len(p) == 0 || p[0] == 'n' && string(bytes.TrimSpace(p)) == "null" {
		return invalid("payload is required and must be a JSON object")
	}
	if p[0] != '{' {
		return invalid("payload must be a JSON object")
	}
	if m := e.SenderMetadata; m != nil {
		for _, f := range []struct{ name, v string }{
			{"senderMetadata.serviceName", m.ServiceName},
			{"senderMetadata.correlationId", m.CorrelationID},
			{"senderMetadata.senderProvidedMessageId", m.SenderProvidedMessageID},
			{"senderMetadata.orderingKey", m.OrderingKey},
			{"senderMetadata.expiresAt", m.ExpiresAt},
		} {
			if len(f.v) > MaxMetadataBytes {
				return invalid("%s is longer than %d bytes", f.name, MaxMetadataBytes)
			}
			if !utf8.ValidString(f.v) {
				return invalid("%s is not valid UTF-8", f.name)
			}
			if strings.IndexByte(f.v, 0) >= 0 {
				// Postgres cannot store U+0000 in text: refused here rather than
				// failing the router's batch statement (DESIGN §2).
				return invalid("%s contains U+0000, which cannot be stored", f.name)
			}
		}
		if m.ExpiresAt != "" {
			if _, err := ParseExpiresAt(m.ExpiresAt); err != nil {
				return err
			}
		}
	}
	return nil
}

// ValidateAddress checks an agent address: non-empty UTF-8, at most 256 bytes, no
// whitespace or control character.
func ValidateAddress(a string) error {
	if a == "" {
		return invalid("aiAgentAddress is required")
	}
	if len(a) > MaxAddressBytes {
		return invalid("aiAgentAddress is longer than %d bytes", MaxAddressBytes)
	}
	if !utf8.ValidString(a) {
		return invalid("aiAgentAddress is not valid UTF-8")
	}
	for i, r := range a {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return invalid("aiAgentAddress has whitespace or a control character at byte %d", i)
		}
	}
	return nil
}

// Marshal encodes the envelope as the body published to JetStream. The payload's
// bytes are copied exactly as they came (already validated by Parse: no second
// scan, no re-encoding of numbers or escapes).
func (e *Envelope) Marshal() []byte {
	b := make([]byte, 0, len(e.Payload)+len(e.AIAgentAddress)+160)
	b = append(b, `{"aiAgentAddress":`...)
	b = appendString(b, e.AIAgentAddress)
	b = append(b, `,"payload":`...)
	b = append(b, e.Payload...)
	if m := e.SenderMetadata; m != nil && (m.ServiceName != "" || m.CorrelationID != "" || m.SenderProvidedMessageID != "" || m.OrderingKey != "" || m.ExpiresAt != "") {
		b = append(b, `,"senderMetadata":{`...)
		sep := ""
		for _, f := range [...]struct{ k, v string }{
			{"serviceName", m.ServiceName}, {"correlationId", m.CorrelationID}, {"senderProvidedMessageId", m.SenderProvidedMessageID},
			{"orderingKey", m.OrderingKey}, {"expiresAt", m.ExpiresAt},
		} {
			if f.v != "" {
				b = append(b, sep...)
				b = append(b, '"')
				b = append(b, f.k...)
				b = append(b, `":`...)
				b = appendString(b, f.v)
				sep = ","
			}
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendString appends s as a JSON string exactly as json.Marshal writes it (HTML
// characters escaped too). Printable ASCII with nothing to escape — addresses and
// metadata nearly always — is copied as it is, without json.Marshal's allocation.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // cannot fail for a string
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Namespaces of the name-based ids. Fixed forever: changing them changes ids.
var (
	senderNamespace   = uuid.NewSHA1(uuid.NameSpaceURL, []byte("urn:msgrouter:sender-provided-message-id"))
	headerNamespace   = uuid.NewSHA1(uuid.NameSpaceURL, []byte("urn:msgrouter:nats-msg-id"))
	sequenceNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("urn:msgrouter:stream-sequence"))
)

// ID returns the messageId of an accepted message: a UUIDv5 of (serviceName,
// senderProvidedMessageId) when the sender gave its own id, so a retried submission
// gets the same id; else a fresh UUIDv7.
func (e *Envelope) ID() (uuid.UUID, bool) {
	if spid := e.SenderProvidedMessageID(); spid != "" {
		return SenderID(e.ServiceName(), spid), true
	}
	return uuid.Must(uuid.NewV7()), false
}

// SenderID derives the messageId from a sender's own id. The service name is
// length-prefixed so ("a", "bc") and ("ab", "c") differ.
func SenderID(serviceName, senderProvidedMessageID string) uuid.UUID {
	name := make([]byte, 0, 8+len(serviceName)+len(senderProvidedMessageID))
	name = strconv.AppendInt(name, int64(len(serviceName)), 10)
	name = append(name, ':')
	name = append(name, serviceName...)
	name = append(name, senderProvidedMessageID...)
	return uuid.NewSHA1(senderNamespace, name)
}

// StoredIdentity names a stored stream message for DirectID's sequence derivation:
// the stream's name and the time JetStream stored the message (its metadata
// timestamp, nanoseconds). Sequences start again at 1 when a stream is recreated or
// rebuilt after a server lost its store, possibly with the same creation time; a
// message stored later under a reused sequence has a later storage time, so the
// pair never repeats (DESIGN §3). Unlike the stream's creation time, which each
// router replica learns on its own (and only the one that recreated the consumer
// used to refresh: issue 8, item 4), the storage time travels with every delivery
// of the message, so every replica derives the same id, for every redelivery.
func StoredIdentity(stream string, storedAt time.Time) string {
	return stream + "@" + storedAt.UTC().Format(time.RFC3339Nano)
}

// DirectID returns the messageId of a message published straight to the stream
// (DESIGN §3): the Nats-Msg-Id header if it is a UUID, else a UUIDv5 of it; else the
// sender-provided derivation when env has one; else a UUIDv5 of stream and sequence
// (stream must name more than the stream, because sequences restart when a stream
// is recreated: the router passes StoredIdentity).
// env may be nil (the body did not parse).
func DirectID(natsMsgID string, env *Envelope, stream string, seq uint64) uuid.UUID {
	if natsMsgID != "" {
		if id, err := uuid.Parse(natsMsgID); err == nil && len(natsMsgID) == 36 {
			return id
		}
		return uuid.NewSHA1(headerNamespace, []byte(natsMsgID))
	}
	if env != nil && env.SenderProvidedMessageID() != "" {
		return SenderID(env.ServiceName(), env.SenderProvidedMessageID())
	}
	return uuid.NewSHA1(sequenceNamespace, strconv.AppendUint([]byte(stream+":"), seq, 10))
}
