// Package auth checks bearer API keys (DESIGN §6, §7). Keys are configured as
// comma- or newline-separated entries "name:key" or a bare "key"; a named key lets
// logs and metrics say who sent what, and binds an ingest sender to its serviceName.
// Keys are compared in constant time against SHA-256 digests, so neither the key nor
// its length leaks through timing.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/msgrouter/msgrouter/internal/httpapi"
)

// Key is one configured key.
type Key struct {
	Name   string // the part before ':'; "" for a bare key
	digest [32]byte
}

// Keys is a parsed key list. The zero value (or nil) accepts everyone.
type Keys struct {
	keys []Key
}

// Parse reads a list of entries separated by commas or newlines. Blank entries and
// lines starting with '#' are skipped.
func Parse(list string) (*Keys, error) {
	k := &Keys{}
	for _, e := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		e = strings.TrimSpace(e)
		if e == "" || strings.HasPrefix(e, "#") {
			continue
		}
		name, secret, named := strings.Cut(e, ":")
		if !named {
			name, secret = "", e
		}
		name, secret = strings.TrimSpace(name), strings.TrimSpace(secret)
		if secret == "" {
			return nil, fmt.Errorf("key %q has an empty secret", name)
		}
		if named && name == "" {
			return nil, errors.New("an entry starts with ':' (want name:key or key)")
		}
		k.keys = append(k.keys, Key{Name: name, digest: sha256.Sum256([]byte(secret))})
	}
	return k, nil
}

// Enabled reports whether any key is configured.
func (k *Keys) Enabled() bool { return k != nil && len(k.keys) > 0 }

// Len is the number of keys.
func (k *Keys) Len() int {
	if k == nil {
		return 0
	}
	return len(k.keys)
}

// Check returns the key matching secret. Every key is compared, so the time taken
// does not depend on which one matched.
func (k *Keys) Check(secret string) (Key, bool) {
	d := sha256.Sum256([]byte(secret))
	var found Key
	ok := 0
	for _, key := range k.keys {
		if subtle.ConstantTimeCompare(d[:], key.digest[:]) == 1 {
			found, ok = key, 1
		}
	}
	return found, ok == 1
}

type ctxKey struct{}

// Caller is who made a request.
type Caller struct {
	Name          string // the key's name; "" for a bare key or when auth is off
	Named         bool
	Authenticated bool // a key was checked (false when auth is off)
}

// CallerFrom returns the caller the middleware authenticated.
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(ctxKey{}).(Caller)
	return c
}

// Bearer extracts the token of an "Authorization: Bearer <token>" header.
func Bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// Require wraps next so requests need a valid key when keys are configured. open
// reports requests that stay open (health, metrics, OpenAPI).
func (k *Keys) Require(next http.Handler, open func(*http.Request) bool) http.Handler {
	if !k.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if open != nil && open(r) {
			next.ServeHTTP(w, r)
			return
		}
		token, ok := Bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="msgrouter"`)
			httpapi.WriteError(w, http.StatusUnauthorized, httpapi.CodeUnauthorized, "missing bearer key: send Authorization: Bearer <key>")
			return
		}
		key, ok := k.Check(token)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="msgrouter", error="invalid_token"`)
			httpapi.WriteError(w, http.StatusUnauthorized, httpapi.CodeUnauthorized, "the bearer key is not valid")
			return
		}
		ctx := context.WithValue(r.Context(), ctxKey{}, Caller{Name: key.Name, Named: key.Name != "", Authenticated: true})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// OpenPaths reports the routes that stay open when keys are configured: health,
// metrics, the OpenAPI document and its page.
func OpenPaths(r *http.Request) bool {
	p := r.URL.Path
	return p == "/health" || strings.HasPrefix(p, "/health/") || p == "/metrics" || p == "/openapi.json" || p == "/docs"
}
