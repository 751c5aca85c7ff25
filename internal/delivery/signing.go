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
// accepts either. The signed prefix and the value are built in place: one HMAC
// per key and one string, no intermediate strings or conversions.
func sign(keys [][]byte, id string, ts int64, body []byte) string {
	var prefix [96]byte
	p := append(prefix[:0], id...)
	p = append(p, '.')
	p = strconv.AppendInt(p, ts, 10)
	p = append(p, '.')
	out := make([]byte, 0, len(keys)*(len("v1,")+base64.StdEncoding.EncodedLen(sha256.Size)+1))
	var sum [sha256.Size]byte
	for i, k := range keys {
		mac := hmac.New(sha256.New, k)
		mac.Write(p)
		mac.Write(body)
		if i > 0 {
			out = append(out, ' ')
		}
		out = append(out, "v1,"...)
		out = base64.StdEncoding.AppendEncode(out, mac.Sum(sum[:0]))
	}
	return string(out)
}
