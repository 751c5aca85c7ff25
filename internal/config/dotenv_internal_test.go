package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

type fakeEnv map[string]string

func (f fakeEnv) lookup(k string) (string, bool) { v, ok := f[k]; return v, ok }
func (f fakeEnv) set(k, v string) error          { f[k] = v; return nil }

// The Python service's README .env: read, and the environment wins.
func TestLoadDotEnvEnvironmentWins(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	writeFile(t, dir, ".env", "# Message Router Service\nDATABASE_URL=postgresql+asyncpg://user:pass@db:5432/router\nexport CAMS_API_URL=\"http://cams:8001\"\nLOG_LEVEL=debug # inline comment\n")
	env := fakeEnv{"LOG_LEVEL": "warn", "NATS_URL": ""}
	d, err := loadDotEnv(env.lookup, env.set)
	require.NoError(t, err)
	require.Equal(t, DotEnv{Path: ".env", Set: 2, Kept: 1}, d)
	require.Equal(t, "postgresql+asyncpg://user:pass@db:5432/router", env["DATABASE_URL"])
	require.Equal(t, "http://cams:8001", env["CAMS_API_URL"])
	require.Equal(t, "warn", env["LOG_LEVEL"], "the real environment wins")
}

func TestLoadDotEnvAbsentIsFine(t *testing.T) {
	t.Chdir(t.TempDir())
	env := fakeEnv{}
	d, err := loadDotEnv(env.lookup, env.set)
	require.NoError(t, err)
	require.Equal(t, DotEnv{}, d)
	require.Empty(t, env)
}

func TestLoadDotEnvNamedFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	writeFile(t, dir, ".env", "A=from-dot-env\n")
	other := writeFile(t, dir, "prod.env", "A=from-prod\n")
	env := fakeEnv{"ENV_FILE": other}
	d, err := loadDotEnv(env.lookup, env.set)
	require.NoError(t, err)
	require.Equal(t, other, d.Path)
	require.Equal(t, "from-prod", env["A"], "ENV_FILE replaces ./.env")

	// ENV_FILE=/dev/null turns the file off (the chaos harness does, for its children).
	env = fakeEnv{"ENV_FILE": os.DevNull}
	d, err = loadDotEnv(env.lookup, env.set)
	require.NoError(t, err)
	require.Equal(t, DotEnv{Path: os.DevNull}, d)
	require.Len(t, env, 1)

	env = fakeEnv{"ENV_FILE": filepath.Join(dir, "missing.env")}
	_, err = loadDotEnv(env.lookup, env.set)
	require.Error(t, err, "a named file that is missing is an error")
	require.Contains(t, err.Error(), "ENV_FILE: cannot read ")
	require.Contains(t, err.Error(), "missing.env")
}

// A malformed file names the file and the line of the bad statement, never a value.
func TestMalformedDotEnvNamesFileAndLine(t *testing.T) {
	cases := []struct {
		name, body string
		line       int
		want       string
	}{
		{"bad name", "A=1\nB=2\nBAD-NAME=secret\nC=3\n", 3, "unexpected character"},
		{"unterminated quote", "A=1\n\nPASSWORD=\"hunter2\nB=2\n", 3, "unterminated quoted value"},
		{"no equals sign", "A=1\nJUSTAWORD\nB=2\n", 2, "in variable name"},
		{"no equals sign at the end", "A=1\nJUSTAWORD\n", 2, "in variable name"},
		{"after a multi-line value", "A=\"line1\nline2\"\nB=ok\nC D=x\n", 4, "not a KEY=value statement"},
		{"crlf", "A=1\r\nB=2\r\n=nokey\r\n", 3, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "x.env", c.body)
			_, err := ReadDotEnv(p)
			require.Error(t, err)
			require.Contains(t, err.Error(), p+", line "+itoa(c.line)+": ")
			require.Contains(t, err.Error(), c.want)
			require.NotContains(t, err.Error(), "secret")
			require.NotContains(t, err.Error(), "hunter2")
			require.NotContains(t, err.Error(), "\n", "one line")
		})
	}
	// And the well-formed multi-line value parses.
	vars, err := ReadDotEnv(writeFile(t, t.TempDir(), "ok.env", "A=\"line1\nline2\"\nB=ok\n"))
	require.NoError(t, err)
	require.Equal(t, "line1\nline2", vars["A"])
}

func itoa(n int) string { return string(rune('0' + n)) }

// FromOS turns a dotenv problem into the Env's error, so every binary stops at
// start with one line; and it logs what it read.
func TestFromOSReportsDotEnvError(t *testing.T) {
	e := &Env{lookup: fakeEnv{}.lookup}
	e.noteDotEnv(DotEnv{}, os.ErrNotExist)
	_, err := LoadRouter(e)
	require.ErrorIs(t, err, os.ErrNotExist)

	e = &Env{lookup: fakeEnv{}.lookup}
	e.noteDotEnv(DotEnv{Path: ".env", Set: 2}, nil)
	require.Len(t, e.notices, 1)
}

// What MIGRATING.md §3 warns about: godotenv expands $NAME and ${NAME} (from the
// file's own variables) in unquoted and double-quoted values, where python-dotenv
// expands ${NAME} only. Single quotes keep a value as written.
func TestDotEnvDollarSigns(t *testing.T) {
	vars, err := ReadDotEnv(writeFile(t, t.TempDir(), "x.env",
		"HOST=db\nURL=postgresql://u@${HOST}/r\nRAW=pa$$W0RD\nQUOTED='pa$$W0RD'\nLOWER=pa$word\n"))
	require.NoError(t, err)
	require.Equal(t, "postgresql://u@db/r", vars["URL"])
	require.Equal(t, "pa$", vars["RAW"], "unquoted: $W0RD is expanded (to nothing)")
	require.Equal(t, "pa$$W0RD", vars["QUOTED"])
	require.Equal(t, "pa$word", vars["LOWER"], "only upper-case names are expanded")
}
