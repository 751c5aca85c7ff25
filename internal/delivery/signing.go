package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// ErrInvalidSigningSecret is wrapped when a signing secret is not whsec_<base64>.
var ErrInvalidSigningSecret = errors.New("invalid signing secret")

const secretPrefix = "whsec_"

// parseSecrets decodes Standard Webhooks secrets: the HMAC key is the base64 part
// after whsec_. The error never contains a secret.
func parseSecrets(secrets []string) ([][]byte, error) {
	keys := make([][]byte, 0, len(secrets))
	for i, s := range secrets {
		k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, secretPrefix))
		if err != nil || len(k) == 0 {
			return nil, fmt.Errorf("%w: secret #%d is not whsec_<base64>", ErrInvalidSigningSecret, i+1)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// keyCacheSize bounds keyCache: about one entry per agent with signing secrets of
// its own; past it the cache starts over (a decode per message costs ~1 µs, so a
// miss is cheap, and the bound keeps rotated secrets from piling up).
const keyCacheSize = 4096

// keyCache remembers parseSecrets' answers for per-agent secrets, so an attempt
// does not base64-decode its agent's secrets again. Keyed by the secrets joined
// with a byte no secret holds; only valid lists are kept.
type keyCache struct {
	mu sync.RWMutex
	m  map[string][][]byte
}

func (c *keyCache) parse(secrets []string) ([][]byte, error) {
	key := strings.Join(secrets, "\x00")
	c.mu.RLock()
	keys, ok := c.m[key]
	c.mu.RUnlock()
	if ok {
		return keys, nil
	}
	keys, err := parseSecrets(secrets)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= keyCacheSize {
		c.m = make(map[string][][]byte)
	}
	c.m[key] = keys
	c.mu.Unlock()
	return keys, nil
}

// sign returns the webhook-signature value: "v1,<base64 HMAC-SHA256 of
// id.timestamp.body>" per key, space-separated, so a receiver rotating secrets
// accepts either.
func sign(keys [][]byte, id string, ts int64, body []byte) string {
	var b strings.Builder
	tsText := strconv.FormatInt(ts, 10)
	for i, k := range keys {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(tsText))
		mac.Write([]byte{'.'})
		mac.Write(body)
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return b.String()
}
