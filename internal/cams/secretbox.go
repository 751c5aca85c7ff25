package cams

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// SecretsKeyBytes is the length of CAMS_SECRETS_KEY once base64-decoded: an
// AES-256 key.
const SecretsKeyBytes = 32

// envelopePrefix starts every encrypted value: "enc:v1:<key id>:<base64(nonce ||
// ciphertext)>". Plain values (whsec_..., JSON) never start with it.
const envelopePrefix = "enc:v1:"

// ErrUnknownSecretsKey: a stored value was encrypted with a key that is neither
// CAMS_SECRETS_KEY nor CAMS_SECRETS_KEY_PREVIOUS.
var ErrUnknownSecretsKey = errors.New("secret encrypted with an unknown key")

// ParseSecretsKey decodes a CAMS_SECRETS_KEY value: standard (or URL-safe) base64
// of exactly SecretsKeyBytes random bytes (e.g. `openssl rand -base64 32`). The error
// never contains the value.
func ParseSecretsKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != SecretsKeyBytes {
				return nil, fmt.Errorf("must be base64 of %d bytes, got %d bytes (generate one with: openssl rand -base64 32)", SecretsKeyBytes, len(k))
			}
			return k, nil
		}
	}
	return nil, errors.New("is not base64 (generate one with: openssl rand -base64 32)")
}

type boxKey struct {
	id   string
	aead cipher.AEAD
}

func newBoxKey(k []byte) (*boxKey, error) {
	if len(k) != SecretsKeyBytes {
		return nil, fmt.Errorf("key must be %d bytes", SecretsKeyBytes)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	// The id names the key without revealing it: a hash of a domain tag and the key.
	sum := sha256.Sum256(append([]byte("msgrouter-cams-secrets-key\x00"), k...))
	return &boxKey{id: hex.EncodeToString(sum[:4]), aead: aead}, nil
}

// SecretBox encrypts the reference CAMS's secrets (signingSecrets, inboxAuth) at
// rest with AES-256-GCM (standard library), each value with a random nonce and
// bound to its agent and field (additional data), so a ciphertext copied to another
// row or column does not open. Every value carries the id of its key; values sealed
// with the current or the previous key open, plain values (stored before a key was
// set) are read as they are. A nil *SecretBox stores values in plain text.
type SecretBox struct {
	current, previous *boxKey
}

// NewSecretBox returns a box sealing with current (32 bytes) and opening values of
// current or previous (nil: none).
func NewSecretBox(current, previous []byte) (*SecretBox, error) {
	c, err := newBoxKey(current)
	if err != nil {
		return nil, fmt.Errorf("CAMS_SECRETS_KEY: %w", err)
	}
	b := &SecretBox{current: c}
	if previous != nil {
		if b.previous, err = newBoxKey(previous); err != nil {
			return nil, fmt.Errorf("CAMS_SECRETS_KEY_PREVIOUS: %w", err)
		}
	}
	return b, nil
}

// KeyID is the id of the current key, as stored with each value ("" for nil).
func (b *SecretBox) KeyID() string {
	if b == nil {
		return ""
	}
	return b.current.id
}

func aad(address, field string) []byte { return []byte(address + "\x00" + field) }

// Seal encrypts plain for address's field; a nil box, or an empty value, returns it
// as it is.
func (b *SecretBox) Seal(plain, address, field string) (string, error) {
	if b == nil || plain == "" {
		return plain, nil
	}
	nonce := make([]byte, b.current.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("error making a nonce: %w", err)
	}
	ct := b.current.aead.Seal(nonce, nonce, []byte(plain), aad(address, field))
	return envelopePrefix + b.current.id + ":" + base64.StdEncoding.EncodeToString(ct), nil
}

// Sealed reports whether stored is an encrypted envelope, and with which key id.
func Sealed(stored string) (keyID string, ok bool) {
	rest, ok := strings.CutPrefix(stored, envelopePrefix)
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, ":")
	return id, ok
}

// Open decrypts a value Seal produced (with the current or previous key); a plain
// value is returned as it is. Errors: ErrUnknownSecretsKey (naming the key id, never
// the value) or a corrupt envelope.
func (b *SecretBox) Open(stored, address, field string) (string, error) {
	rest, ok := strings.CutPrefix(stored, envelopePrefix)
	if !ok {
		return stored, nil
	}
	id, data, ok := strings.Cut(rest, ":")
	if !ok {
		return "", fmt.Errorf("corrupt encrypted %s of agent %q", field, address)
	}
	var k *boxKey
	switch {
	case b == nil:
	case b.current.id == id:
		k = b.current
	case b.previous != nil && b.previous.id == id:
		k = b.previous
	}
	if k == nil {
		return "", fmt.Errorf("%w: %s of agent %q was encrypted with key id %s; set CAMS_SECRETS_KEY (or CAMS_SECRETS_KEY_PREVIOUS) to that key", ErrUnknownSecretsKey, field, address, id)
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil || len(raw) < k.aead.NonceSize() {
		return "", fmt.Errorf("corrupt encrypted %s of agent %q", field, address)
	}
	plain, err := k.aead.Open(nil, raw[:k.aead.NonceSize()], raw[k.aead.NonceSize():], aad(address, field))
	if err != nil {
		return "", fmt.Errorf("encrypted %s of agent %q does not open with key id %s (tampered, or moved from another agent)", field, address, id)
	}
	return string(plain), nil
}
