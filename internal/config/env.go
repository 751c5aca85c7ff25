// Package config reads the environment variables of the contract (DESIGN §7) into one
// struct per binary, with defaults filled in and every value validated, so a binary
// with a bad setting stops at start with one line naming the variable.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env reads variables through lookup (os.LookupEnv by default) and remembers the
// first problem, so a loader reads every field straight and checks Err once.
type Env struct {
	lookup  func(string) (string, bool)
	err     error
	notices []notice
}

// FromOS reads the process environment, after LoadDotEnv has added what a dotenv
// file (ENV_FILE, else ./.env) holds and the environment lacks. A malformed or
// missing named file is the Env's first error.
func FromOS() *Env {
	e := &Env{lookup: os.LookupEnv}
	e.noteDotEnv(LoadDotEnv())
	return e
}

// FromMap reads m; tests use it.
func FromMap(m map[string]string) *Env {
	return &Env{lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

// Err is the first problem found, as "NAME: what is wrong".
func (e *Env) Err() error { return e.err }

func (e *Env) fail(name, format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
	}
}

func (e *Env) raw(name string) (string, bool) {
	v, ok := e.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

// String returns the variable or def when unset or empty.
func (e *Env) String(name, def string) string {
	if v, ok := e.raw(name); ok {
		return v
	}
	return def
}

// Int returns the variable as an integer in [min, max].
func (e *Env) Int(name string, def, lo, hi int) int {
	return inRange(e, name, def, lo, hi, strconv.Atoi, "a whole number", "%d")
}

// Float returns the variable as a number in [lo, hi].
func (e *Env) Float(name string, def, lo, hi float64) float64 {
	return inRange(e, name, def, lo, hi, func(v string) (float64, error) { return strconv.ParseFloat(v, 64) },
		"a number", "%g")
}

// Duration returns the variable as a Go duration (250ms, 2s, 5m) in [lo, hi].
func (e *Env) Duration(name string, def, lo, hi time.Duration) time.Duration {
	return inRange(e, name, def, lo, hi, time.ParseDuration, "a duration like 250ms, 2s or 5m", "%s")
}

// inRange reads name with parse; unset, it is def; unparsable ("is not " + what)
// or outside [lo, hi] (values shown with verb), it is recorded as a failure and
// def is returned.
func inRange[T cmp.Ordered](e *Env, name string, def, lo, hi T, parse func(string) (T, error), what, verb string) T {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	x, err := parse(v)
	if err != nil {
		e.fail(name, "%q is not "+what, v)
		return def
	}
	if x < lo || x > hi {
		e.fail(name, verb+" is out of range ["+verb+", "+verb+"]", x, lo, hi)
		return def
	}
	return x
}

// Bool returns the variable as a boolean (true/false/1/0/yes/no).
func (e *Env) Bool(name string, def bool) bool {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	}
	e.fail(name, "%q is not true or false", v)
	return def
}

// URL returns the variable as an absolute URL with one of schemes.
func (e *Env) URL(name, def string, schemes ...string) string {
	v := e.String(name, def)
	if v == "" {
		return v
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		e.fail(name, "%q is not an absolute URL", Mask(v))
		return v
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return v
		}
	}
	e.fail(name, "scheme %q is not one of %s", u.Scheme, strings.Join(schemes, ", "))
	return v
}

// Addr returns a listen address such as ":8080" or "127.0.0.1:8080".
func (e *Env) Addr(name, def string) string {
	v := e.String(name, def)
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		e.fail(name, "%q is not a host:port listen address", v)
		return v
	}
	if p, err := strconv.Atoi(v[i+1:]); err != nil || p < 0 || p > 65535 {
		e.fail(name, "%q has no valid port", v)
	}
	return v
}

// File returns the contents of the file the variable names ("" when unset).
func (e *Env) File(name string) string {
	path, ok := e.raw(name)
	if !ok {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		e.fail(name, "cannot read %s: %v", path, errors.Unwrap(err))
		return ""
	}
	return string(b)
}

// Mask hides the password of a URL and anything that looks like a secret, for the
// start-up configuration log.
func Mask(s string) string {
	if s == "" {
		return ""
	}
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
	}
	if u, err := url.Parse(s); err == nil && u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if strings.Contains(strings.ToLower(k), "pass") || strings.Contains(strings.ToLower(k), "secret") || strings.Contains(strings.ToLower(k), "key") {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	return s
}
