package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/joho/godotenv"
)

// DotEnvFile is the file read from the working directory when ENV_FILE is unset.
const DotEnvFile = ".env"

// DotEnv says what LoadDotEnv did.
type DotEnv struct {
	// Path is the file read; "" when there was none (no ENV_FILE and no ./.env).
	Path string
	// Set counts the variables taken from the file; Kept counts those the file also
	// names but the real environment already had (the environment wins).
	Set, Kept int
}

var (
	dotenvOnce   sync.Once
	dotenvResult DotEnv
	dotenvErr    error
)

// LoadDotEnv reads a dotenv file into the process environment, once per process,
// before any configuration is read, so every binary of msgrouter is configured the
// way the Python Message Router Service was: a `.env` file in the working directory
// (issue 14). The rules:
//
//   - ENV_FILE names the file; unset, ./.env is read when it exists, and nothing
//     happens when it does not. A file ENV_FILE names but that cannot be read is an
//     error.
//   - A variable already in the environment is never overwritten, even when empty:
//     the real environment always wins (godotenv.Load's rule, and docker/compose's).
//   - The syntax is godotenv's (github.com/joho/godotenv): KEY=value, `export KEY=...`,
//     single/double quotes (double quotes expand \n and ${VAR}), # comments.
//   - A malformed file is an error naming the file and the line of the first bad
//     statement, never its values (they may hold passwords).
//
// It is safe to call from several places: the first call does the work and later
// calls return the same result. FromOS calls it.
func LoadDotEnv() (DotEnv, error) {
	dotenvOnce.Do(func() {
		dotenvResult, dotenvErr = loadDotEnv(os.LookupEnv, os.Setenv)
	})
	return dotenvResult, dotenvErr
}

func loadDotEnv(lookup func(string) (string, bool), setenv func(string, string) error) (DotEnv, error) {
	path, named := lookup("ENV_FILE")
	path = strings.TrimSpace(path)
	named = named && path != ""
	if !named {
		path = DotEnvFile
	}
	vars, err := ReadDotEnv(path)
	if err != nil {
		if !named && errors.Is(err, fs.ErrNotExist) {
			return DotEnv{}, nil
		}
		if named {
			return DotEnv{}, fmt.Errorf("ENV_FILE: %w", err)
		}
		return DotEnv{}, err
	}
	d := DotEnv{Path: path}
	for k, v := range vars {
		if _, ok := lookup(k); ok {
			d.Kept++
			continue
		}
		if err := setenv(k, v); err != nil {
			return DotEnv{}, fmt.Errorf("%s: cannot set %s: %w", path, k, err)
		}
		d.Set++
	}
	return d, nil
}

// validKey is a portable environment variable name (POSIX: letters, digits and
// underscore, not starting with a digit). godotenv also takes '.', which no
// variable of ours uses and a shell cannot export.
var validKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ReadDotEnv parses a dotenv file (godotenv syntax) without touching the
// environment. A file that does not exist gives an error matching fs.ErrNotExist; a
// malformed one, "<path>, line N: <what>" with the line of the first statement that
// cannot be parsed. Values never appear in errors.
func ReadDotEnv(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("cannot read %s: %w", path, pe.Err)
		}
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	vars, perr := parseDotEnv(b)
	if perr == nil {
		return vars, nil
	}
	return nil, fmt.Errorf("%s, line %d: %s", path, badLine(b), perr)
}

// parseDotEnv is godotenv's parser plus a check of the names: godotenv joins a line
// without '=' to the next statement's name ("FOO\nBAR=1" sets "FOO\nBAR"), which
// must not pass silently.
func parseDotEnv(b []byte) (map[string]string, error) {
	vars, err := godotenv.UnmarshalBytes(b)
	if err != nil {
		return nil, describeParseError(err)
	}
	for k := range vars {
		if !validKey.MatchString(k) {
			return nil, errors.New("not a KEY=value statement (a variable name is letters, digits and _)")
		}
	}
	return vars, nil
}

// describeParseError keeps godotenv's diagnosis without the text it quotes, which
// is the rest of the file (values, passwords).
func describeParseError(err error) error {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "unterminated quoted value"):
		return errors.New("unterminated quoted value")
	case strings.HasPrefix(msg, "unexpected character"):
		if i := strings.Index(msg, " near "); i > 0 {
			msg = msg[:i]
		}
		return errors.New(msg)
	}
	return errors.New("cannot parse")
}

// badLine finds the line where the first bad statement starts: godotenv does not
// report lines. The file's first k lines are parsed for growing k; a prefix that
// cuts a multi-line quoted value fails only until the value closes, while a bad
// statement makes every longer prefix fail too. So the answer is the smallest k
// from which every prefix fails. Dotenv files are short; this runs only on error.
func badLine(b []byte) int {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	lines := bytes.SplitAfter(b, []byte("\n"))
	bad := len(lines)
	for k := len(lines); k >= 1; k-- {
		if _, err := parseDotEnv(bytes.Join(lines[:k], nil)); err == nil {
			break
		}
		bad = k
	}
	return bad
}

// notice is an INFO line a loader wants logged once the logger exists.
type notice struct {
	msg   string
	attrs []slog.Attr
}

func (e *Env) note(msg string, attrs ...slog.Attr) {
	e.notices = append(e.notices, notice{msg: msg, attrs: attrs})
}

// LogNotices writes, at INFO, what reading the configuration changed or assumed:
// the dotenv file read, a DATABASE_URL accepted in SQLAlchemy form. Secrets are
// masked. Binaries call it right after creating their logger.
func (e *Env) LogNotices(ctx context.Context, log *slog.Logger) {
	for _, n := range e.notices {
		log.LogAttrs(ctx, slog.LevelInfo, n.msg, n.attrs...)
	}
}

func (e *Env) noteDotEnv(d DotEnv, err error) {
	if err != nil {
		e.err = err
		return
	}
	if d.Path != "" {
		e.note("read configuration from a dotenv file (the environment wins over it)",
			slog.String("env_file", d.Path), slog.Int("variables_set", d.Set), slog.Int("variables_kept_from_environment", d.Kept))
	}
}
