package message

import (
	"encoding/json"
	"strings"
)

// decodeFast expects valid UTF-8 (Parse checks it first). It decodes the common shape of an envelope without reflection: one JSON
// object whose keys are spelled exactly as the contract spells them, each at most
// once, with string values free of escapes, a non-null payload and a senderMetadata
// that is an object. It returns ok=false for anything else — a syntax or type error,
// a duplicate key, a key that matches a field only case-insensitively, an escape, a
// null — and Parse then decodes with encoding/json as before, so every error message
// and every corner of encoding/json's semantics (last duplicate wins, case folding,
// escapes, merging) stays exactly as it was. When ok, the result equals what
// json.Unmarshal gives (FuzzDecodeFast checks this): values that are not decoded
// (the payload, unknown keys) are checked with json.Valid, and the payload's bytes
// are copied unchanged.
//
// Why: encoding/json was 11–13 % of the router's and of ingest's CPU (BENCHMARKS.md,
// "Levers"); both parse every message.
func decodeFast(b []byte) (*Envelope, bool) {
	s := scanner{b: b}
	env := new(Envelope)
	var seenAddr, seenPayload, seenMeta bool
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "aiAgentAddress":
			if seenAddr {
				return false
			}
			seenAddr = true
			v, ok := s.str()
			env.AIAgentAddress = string(v)
			return ok
		case "payload":
			if seenPayload || s.peek() == 'n' {
				return false
			}
			seenPayload = true
			v, ok := s.value()
			env.Payload = append(json.RawMessage(nil), v...)
			return ok
		case "senderMetadata":
			if seenMeta || s.peek() != '{' {
				return false
			}
			seenMeta = true
			env.SenderMetadata = new(SenderMetadata)
			return s.metadata(env.SenderMetadata)
		}
		return s.unknown(key, "aiAgentAddress", "payload", "senderMetadata")
	})
	if !ok {
		return nil, false
	}
	s.ws()
	return env, s.i == len(b)
}

// metadataKeys are senderMetadata's JSON keys, in SenderMetadata's field order.
var metadataKeys = [...]string{"serviceName", "correlationId", "senderProvidedMessageId", "orderingKey", "expiresAt"}

func (s *scanner) metadata(m *SenderMetadata) bool {
	fields := [...]*string{&m.ServiceName, &m.CorrelationID, &m.SenderProvidedMessageID, &m.OrderingKey, &m.ExpiresAt}
	var seen [len(fields)]bool
	return s.object(func(key []byte) bool {
		for i, k := range metadataKeys {
			if string(key) == k {
				if seen[i] {
					return false
				}
				seen[i] = true
				v, ok := s.str()
				*fields[i] = string(v)
				return ok
			}
		}
		return s.unknown(key, metadataKeys[:]...)
	})
}

// scanner walks JSON bytes; every method returns false where the fast path gives up.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// object reads `{ "key": value, ... }` (whitespace allowed where JSON allows it),
// calling member with the cursor on each value.
func (s *scanner) object(member func(key []byte) bool) bool {
	s.ws()
	if s.peek() != '{' {
		return false
	}
	s.i++
	s.ws()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		key, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		if !member(key) {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// str reads a string with no escape and no control character and returns its
// bytes between the quotes (valid UTF-8: Parse checked the whole body first).
func (s *scanner) str() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// unknown skips the value of a key the envelope does not know, as encoding/json
// ignores it — unless the key could match a field case-insensitively (or through
// encoding/json's Unicode folding), which only encoding/json decides.
func (s *scanner) unknown(key []byte, fields ...string) bool {
	for _, c := range key {
		if c >= 0x80 {
			return false
		}
	}
	for _, f := range fields {
		if strings.EqualFold(string(key), f) {
			return false
		}
	}
	_, ok := s.value()
	return ok
}

// value skips one JSON value and returns its bytes, checked with json.Valid.
func (s *scanner) value() ([]byte, bool) {
	start, j := s.i, s.i
	if j >= len(s.b) {
		return nil, false
	}
	switch s.b[j] {
	case '"':
		j = skipString(s.b, j)
	case '{', '[':
		depth := 0
	loop:
		for ; j < len(s.b); j++ {
			switch s.b[j] {
			case '"':
				j = skipString(s.b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					j++
					break loop
				}
			}
		}
	default: // number, true, false, null
		for j < len(s.b) {
			switch s.b[j] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				goto done
			}
			j++
		}
	done:
	}
	if j < 0 || j > len(s.b) || j == start {
		return nil, false
	}
	v := s.b[start:j]
	if !json.Valid(v) {
		return nil, false
	}
	s.i = j
	return v, true
}

// skipString returns the index after the string starting at b[i] == '"', or
// len(b)+1 when it does not end.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b) + 1
}
