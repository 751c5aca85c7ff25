package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
