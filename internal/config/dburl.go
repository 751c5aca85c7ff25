package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
)

// pythonOnlyParams are query parameters Python drivers or SQLAlchemy read from a
// database URL but that mean nothing to Postgres. pgx would send each unknown
// parameter to the server as a run-time setting, and the server refuses the
// connection ("unrecognized configuration parameter"), so they are dropped.
//
//   - asyncpg connect() keywords SQLAlchemy passes through: command_timeout,
//     statement_cache_size, max_cached_statement_lifetime,
//     max_cacheable_statement_size (asyncpg docs, "connect");
//   - SQLAlchemy asyncpg dialect: prepared_statement_cache_size,
//     prepared_statement_name_func, async_fallback (SQLAlchemy docs, "asyncpg");
//   - psycopg (3) / SQLAlchemy: client_encoding is a libpq parameter and kept, but
//     psycopg2's "executemany_mode"-style engine options never belong in a URL.
var pythonOnlyParams = []string{
	"command_timeout", "statement_cache_size", "max_cached_statement_lifetime",
	"max_cacheable_statement_size", "prepared_statement_cache_size",
	"prepared_statement_name_func", "async_fallback",
}

// sslValues maps asyncpg's `ssl` URL parameter onto libpq's sslmode. asyncpg takes
// the libpq mode names and also true/false; pgx understands only ssl=true, and sends
// any other ssl=... to the server, which refuses it.
var sslValues = map[string]string{
	"true": "require", "1": "require", "on": "require", "yes": "require",
	"false": "disable", "0": "disable", "off": "disable", "no": "disable",
	"disable": "disable", "allow": "allow", "prefer": "prefer", "require": "require",
	"verify-ca": "verify-ca", "verify-full": "verify-full",
}

// NormalizeDatabaseURL accepts a DATABASE_URL written for the Python Message Router
// Service (SQLAlchemy form) and returns the libpq/pgx URL with the same meaning,
// plus a description of each change ("" when nothing changed). Rewrites:
//
//   - scheme postgresql+<driver>:// or postgres+<driver>:// (asyncpg, psycopg,
//     psycopg2, pg8000, ...) → postgresql://;
//   - ssl=<mode> (asyncpg) → sslmode=<mode> (true → require, false → disable); an
//     explicit sslmode wins;
//   - timeout=<seconds> (asyncpg's connect timeout) → connect_timeout=<seconds>;
//   - SQLAlchemy's multi-host form `@/db?host=h1:5432&host=h2:5432` → `@h1:5432,h2:5432/db`
//     (libpq's form; pgx keeps only the last host= otherwise);
//   - Python-only parameters (pythonOnlyParams) are dropped.
//
// Key=value connection strings and plain postgres:// URLs without those parameters
// are returned unchanged. The error says what is wrong without the password.
func NormalizeDatabaseURL(dsn string) (string, string, error) {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return dsn, "", nil // key=value form or empty: libpq syntax already
	}
	var changes []string
	lower := strings.ToLower(scheme)
	base, driver, hasDriver := strings.Cut(lower, "+")
	if base != "postgres" && base != "postgresql" {
		return dsn, "", fmt.Errorf("scheme %q is not postgres:// or postgresql://", scheme)
	}
	if hasDriver {
		changes = append(changes, fmt.Sprintf("scheme %s:// (SQLAlchemy, driver %s) read as postgresql://", scheme, driver))
		scheme = "postgresql"
	}
	// The query starts at the first '?' after the userinfo: a password should be
	// percent-encoded, but an unencoded '?' in it must not be taken for the query.
	at := strings.LastIndexByte(rest, '@')
	q := strings.IndexByte(rest[at+1:], '?')
	if q < 0 {
		if len(changes) == 0 {
			return dsn, "", nil
		}
		return scheme + "://" + rest, strings.Join(changes, "; "), nil
	}
	authPath, rawQuery := rest[:at+1+q], rest[at+1+q+1:]
	params, err := url.ParseQuery(rawQuery)
	if err != nil {
		return dsn, "", fmt.Errorf("cannot parse the query of %s: %v", MaskDSN(dsn), err)
	}
	if v, ok := params["ssl"]; ok {
		mode, known := sslValues[strings.ToLower(v[len(v)-1])]
		switch {
		case params.Has("sslmode"):
			changes = append(changes, "ssl= dropped (sslmode= is also set and wins)")
		case !known:
			return dsn, "", fmt.Errorf("ssl=%q is not a TLS mode (want disable, allow, prefer, require, verify-ca, verify-full, true or false)", v[len(v)-1])
		default:
			params.Set("sslmode", mode)
			changes = append(changes, fmt.Sprintf("ssl=%s read as sslmode=%s", v[len(v)-1], mode))
		}
		params.Del("ssl")
	}
	if v, ok := params["timeout"]; ok {
		if !params.Has("connect_timeout") {
			params.Set("connect_timeout", v[len(v)-1])
			changes = append(changes, "timeout= read as connect_timeout=")
		} else {
			changes = append(changes, "timeout= dropped (connect_timeout= is also set)")
		}
		params.Del("timeout")
	}
	for _, p := range pythonOnlyParams {
		if params.Has(p) {
			params.Del(p)
			changes = append(changes, p+"= dropped (a Python driver setting)")
		}
	}
	if hosts := params["host"]; len(hosts) > 1 || (len(hosts) == 1 && !strings.HasPrefix(hosts[0], "/") && strings.Contains(hosts[0], ":")) {
		userinfo, hostPath := authPath[:at+1], authPath[at+1:]
		if hostPart, path, _ := strings.Cut(hostPath, "/"); hostPart == "" {
			authPath = userinfo + strings.Join(hosts, ",") + "/" + path
			params.Del("host")
			changes = append(changes, "host= parameters (SQLAlchemy multi-host) read as hosts of the URL")
		}
	}
	if len(changes) == 0 {
		return dsn, "", nil
	}
	out := scheme + "://" + authPath
	if len(params) > 0 {
		out += "?" + params.Encode()
	}
	return out, strings.Join(changes, "; "), nil
}

// DatabaseURL reads a Postgres connection string (DATABASE_URL), accepting the
// SQLAlchemy forms of the Python service (NormalizeDatabaseURL) with one INFO notice
// saying what was read how, the password masked.
func (e *Env) DatabaseURL(name string) string {
	v := e.String(name, "")
	out, changes, err := NormalizeDatabaseURL(v)
	if err != nil {
		e.fail(name, "%v", err)
		return v
	}
	if changes != "" {
		e.note(name+" accepted in SQLAlchemy form as a plain postgresql:// URL",
			slog.String("database_url", MaskDSN(out)), slog.String("changes", changes))
	}
	return out
}
