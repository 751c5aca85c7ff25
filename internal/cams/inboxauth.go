package cams

import (
	"encoding/base64"
	"log/slog"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Inbox credential types (DESIGN §4, inboxAuth).
const (
	AuthBearer = "BEARER" // Authorization: Bearer <token>
	AuthHeader = "HEADER" // <name>: <value>, e.g. X-API-Key
	AuthBasic  = "BASIC"  // Authorization: Basic base64(<username>:<password>)
)

// Masked is what every CAMS answer shows instead of a secret (DESIGN §4), and what
// a client may write back to keep the stored value.
const Masked = "***"

// MaxSecretBytes bounds a token, header value, username or password.
const MaxSecretBytes = 4096

// InboxAuth is the credentials an agent's HTTP inbox requires. Token, Value and
// Password are secrets; Name and Username are not. Its String and LogValue never
// show a secret, so a stray log of it is harmless.
type InboxAuth struct {
	Type     string `json:"type"`
	Token    string `json:"token,omitempty"`
	Name     string `json:"name,omitempty"`
	Value    string `json:"value,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// String shows the type only.
func (a InboxAuth) String() string { return "InboxAuth{type=" + a.Type + ", credentials masked}" }

// LogValue shows the type only (slog.LogValuer).
func (a InboxAuth) LogValue() slog.Value { return slog.StringValue(a.String()) }

// Header returns the HTTP header that carries the credentials: Authorization for
// BEARER and BASIC (RFC 6750, RFC 7617), the configured name for HEADER. ok is false
// for an unknown type.
func (a *InboxAuth) Header() (name, value string, ok bool) {
	switch a.Type {
	case AuthBearer:
		return "Authorization", "Bearer " + a.Token, true
	case AuthBasic:
		return "Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(a.Username+":"+a.Password)), true
	case AuthHeader:
		return http.CanonicalHeaderKey(a.Name), a.Value, true
	}
	return "", "", false
}

// Credential validates the credentials as the reference CAMS does
// (ValidateInboxAuth: CAMS may be another implementation) and returns the header
// to send. An error says what is wrong without the secret.
func (a *InboxAuth) Credential() (header, value string, err error) {
	if err := ValidateInboxAuth(a); err != nil {
		return "", "", err
	}
	header, value, _ = a.Header()
	return header, value, nil
}

// masked returns a copy with the secrets replaced by Masked.
func (a *InboxAuth) masked() *InboxAuth {
	if a == nil {
		return nil
	}
	c := *a
	for _, p := range []*string{&c.Token, &c.Value, &c.Password} {
		if *p != "" {
			*p = Masked
		}
	}
	return &c
}

// keepMasked fills the secrets written back as Masked from stored, the value in
// place: writing back what GET showed keeps the credentials (DESIGN §4). A Masked
// secret with no stored secret of the same type is left as it is (and refused by
// Validate).
func (a *InboxAuth) keepMasked(stored *InboxAuth) {
	if a == nil || stored == nil || stored.Type != a.Type {
		return
	}
	if a.Token == Masked {
		a.Token = stored.Token
	}
	if a.Value == Masked {
		a.Value = stored.Value
	}
	if a.Password == Masked {
		a.Password = stored.Password
	}
}

// reservedHeaders are the headers the router sets itself on an HTTP delivery
// (DESIGN §5) or that HTTP itself owns: credentials may not replace them.
var reservedHeaders = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Content-Encoding": true, "Host": true,
	"Transfer-Encoding": true, "Connection": true, "Keep-Alive": true, "Upgrade": true, "Te": true,
	"Trailer": true, "Expect": true, "Proxy-Authorization": true, "Proxy-Connection": true,
	"X-Message-Id": true, "Idempotency-Key": true, "X-Ai-Agent-Address": true,
	"X-Timestamp-Published": true, "X-Sender-Id": true, "X-Correlation-Id": true,
	"X-Sender-Provided-Message-Id": true, "Traceparent": true, "Tracestate": true, "Baggage": true,
	"User-Agent": true,
}

// ReservedHeader reports whether name is a header inboxAuth may not set: one the
// router sets itself on every delivery (DESIGN §5 — the attribute headers,
// Content-Type, traceparent, any webhook-* of Standard Webhooks) or a hop-by-hop
// or framing header of HTTP. Case-insensitive.
func ReservedHeader(name string) bool {
	c := http.CanonicalHeaderKey(name)
	return reservedHeaders[c] || strings.HasPrefix(c, "Webhook-")
}

// ValidateInboxAuth checks credentials (DESIGN §4): a known type with its required
// fields, non-empty, at most MaxSecretBytes, no control characters (they would break
// the header), a valid header name that is not ReservedHeader, no ':' in a BASIC
// username (RFC 7617). Errors never contain a secret. nil is valid (no auth).
func ValidateInboxAuth(a *InboxAuth) error {
	if a == nil {
		return nil
	}
	field := func(name, v string, secret bool) error {
		if v == "" {
			return invalidf("inboxAuth."+name, "is required for type %s and must not be empty", a.Type)
		}
		if secret && v == Masked {
			return invalidf("inboxAuth."+name, "is %q but no credentials of this type are stored to keep", Masked)
		}
		if len(v) > MaxSecretBytes {
			return invalidf("inboxAuth."+name, "is longer than %d bytes", MaxSecretBytes)
		}
		if !utf8.ValidString(v) || !validHeaderValue(v) {
			return invalidf("inboxAuth."+name, "has a control character or invalid UTF-8")
		}
		return nil
	}
	extra := func(names ...string) error {
		set := map[string]string{"token": a.Token, "name": a.Name, "value": a.Value, "username": a.Username, "password": a.Password}
		for _, n := range names {
			delete(set, n)
		}
		for n, v := range set {
			if v != "" {
				return invalidf("inboxAuth."+n, "is not a field of type %s", a.Type)
			}
		}
		return nil
	}
	switch a.Type {
	case AuthBearer:
		if err := field("token", a.Token, true); err != nil {
			return err
		}
		return extra("token")
	case AuthHeader:
		if a.Name == "" {
			return invalidf("inboxAuth.name", "is required for type HEADER (e.g. X-API-Key)")
		}
		if !validHeaderName(a.Name) {
			return invalidf("inboxAuth.name", "%q is not a valid HTTP header name", a.Name)
		}
		if ReservedHeader(a.Name) {
			return invalidf("inboxAuth.name", "%q is a header the router sets itself on every delivery", a.Name)
		}
		if err := field("value", a.Value, true); err != nil {
			return err
		}
		return extra("name", "value")
	case AuthBasic:
		if err := field("username", a.Username, false); err != nil {
			return err
		}
		if strings.Contains(a.Username, ":") {
			return invalidf("inboxAuth.username", "must not contain ':' (RFC 7617)")
		}
		if err := field("password", a.Password, true); err != nil {
			return err
		}
		return extra("username", "password")
	case "":
		return invalidf("inboxAuth.type", "is required (BEARER, HEADER or BASIC)")
	default:
		return invalidf("inboxAuth.type", "%q is not BEARER, HEADER or BASIC", a.Type)
	}
}

// validHeaderName: a token of RFC 9110 §5.1 (tchar).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue: no control character but HTAB (RFC 9110 §5.5), and no
// leading or trailing whitespace, which HTTP would strip.
func validHeaderValue(s string) bool {
	for _, r := range s {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(s) == s
}
