package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/msgrouter/msgrouter/internal/apiclient"
)

// Exit codes of the contract (DESIGN §10).
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError is bad usage: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

// errReported means the command already printed its errors: exit 1, print nothing more.
var errReported = errors.New("failed")

// globals are the flags every command accepts, before or after its name.
type globals struct {
	routerURL, ingestURL, camsURL, natsURL, apiKey string
	json                                           bool
	timeout                                        time.Duration
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.routerURL, "router-url", g.routerURL, "router admin API `URL` (env ROUTER_URL)")
	fs.StringVar(&g.ingestURL, "ingest-url", g.ingestURL, "ingest API `URL` (env INGEST_URL)")
	fs.StringVar(&g.camsURL, "cams-url", g.camsURL, "CAMS API `URL` (env CAMS_API_URL)")
	fs.StringVar(&g.natsURL, "nats-url", g.natsURL, "NATS server `URL` (env NATS_URL)")
	fs.StringVar(&g.apiKey, "api-key", g.apiKey, "bearer `key` sent to every API (env ROUTERCTL_API_KEY)")
	fs.BoolVar(&g.json, "json", g.json, "machine-readable JSON output")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "per-request `timeout`")
}

type command struct {
	name    string
	args    string
	summary string
	run     func(ctx context.Context, a *app, args []string) error
}

func commands() []command {
	return []command{
		{"status", "<messageId>", "show a message's status and delivery history", cmdStatus},
		{"list", "[--status S] [--agent A] [--limit N] [--all]", "list messages, newest first", cmdList},
		{"dead-letters", "[--agent A] [--reason R] [--limit N] [--all]", "list DEAD_LETTERED and REJECTED messages", cmdDeadLetters},
		{"replay", "<messageId>... | - | --all [filters]", "replay dead letters by id, from stdin, or by filter", cmdReplay},
		{"send", "--agent A --payload JSON [--wait]", "submit a message through ingest", cmdSend},
		{"agents", "list|get|create|update|delete|health ...", "manage agent registrations in CAMS", cmdAgents},
		{"tail", "<subject>", "print messages as they arrive on a NATS inbox subject", cmdTail},
		{"bench", "[--mode http|nats] [--clients N | --rate R] ...", "load-test a running msgrouter end to end", cmdBench},
		{"audit", "[--since 1h] [--grace 1m] [--pending-threshold 5m] [--json]", "reconcile the stream with the router's records; exit 1 on a gap", cmdAudit},
		{"help", "[command]", "show help", nil},
	}
}

type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// terminal reports whether a stream is an interactive terminal (progress bars).
	terminal func(any) bool
	g        globals
	getenv   func(string) string // the environment (commands' own variables, e.g. DATABASE_URL)

	clientOnce sync.Once
	client     *apiclient.Client
}

func newApp(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) *app {
	return &app{
		stdin: stdin, stdout: stdout, stderr: stderr, terminal: isTerminal, getenv: getenv,
		g: globals{
			routerURL: cmp.Or(getenv("ROUTER_URL"), apiclient.DefaultRouterURL),
			ingestURL: cmp.Or(getenv("INGEST_URL"), apiclient.DefaultIngestURL),
			camsURL:   cmp.Or(getenv("CAMS_API_URL"), apiclient.DefaultCAMSURL),
			natsURL:   cmp.Or(getenv("NATS_URL"), "nats://127.0.0.1:4222"),
			apiKey:    getenv("ROUTERCTL_API_KEY"),
			timeout:   10 * time.Second,
		},
	}
}

func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// run executes one command line and returns the exit status.
func (a *app) run(ctx context.Context, args []string) int {
	top := flag.NewFlagSet("routerctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	a.g.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.usage(a.stdout)
			return exitOK
		}
		return a.fail(usagef("%v", err))
	}
	rest := top.Args()
	if len(rest) == 0 {
		a.usage(a.stderr)
		return exitUsage
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		if len(rest) == 0 {
			a.usage(a.stdout)
			return exitOK
		}
		name, rest = rest[0], []string{"--help"}
	}
	i := slices.IndexFunc(commands(), func(c command) bool { return c.name == name })
	if i < 0 || commands()[i].run == nil {
		return a.fail(usagef("unknown command %q (routerctl help lists them)", name))
	}
	return a.fail(commands()[i].run(ctx, a, rest))
}

// fail prints err the contract's way and maps it to an exit status.
func (a *app) fail(err error) int {
	var ue *usageError
	var apiErr *apiclient.Error
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(a.stderr, "error:", ue.msg)
		return exitUsage
	case errors.Is(err, errReported):
		return exitFail
	case errors.As(err, &apiErr):
		fmt.Fprintln(a.stderr, "error:", apiErr.Error())
		return exitFail
	}
	fmt.Fprintln(a.stderr, "error:", err)
	return exitFail
}

func (a *app) usage(w io.Writer) {
	fmt.Fprintln(w, "routerctl: the msgrouter operators' CLI")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: routerctl [global flags] <command> [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n  %-13s   %s\n", c.name, c.summary, "", c.args)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "global flags (accepted before or after the command):")
	fs := flag.NewFlagSet("routerctl", flag.ContinueOnError)
	g := a.g
	g.register(fs)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "exit status: 0 ok, 1 not found or failed, 2 bad usage. `routerctl <command> --help` shows a command's flags.")
}

var globalFlags = map[string]bool{
	"router-url": true, "ingest-url": true, "cams-url": true, "nats-url": true,
	"api-key": true, "json": true, "timeout": true,
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// flags returns a command's FlagSet, with the global flags registered too.
func (a *app) flags(name, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("routerctl "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := a.stdout
		fmt.Fprintf(w, "usage: routerctl %s %s\n\n%s\n", name, args, summary)
		// The command's own flags; the global ones are listed by `routerctl help`.
		own := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.VisitAll(func(f *flag.Flag) {
			if !globalFlags[f.Name] {
				own.Var(f.Value, f.Name, f.Usage)
			}
		})
		if hasFlags(own) {
			fmt.Fprintln(w, "\nflags:")
			own.SetOutput(w)
			own.PrintDefaults()
		}
		fmt.Fprintln(w, "\nglobal flags (--router-url, --ingest-url, --cams-url, --nats-url, --api-key, --json, --timeout): see routerctl help")
	}
	a.g.register(fs)
	return fs
}

// parse parses flags anywhere among the arguments ("status ID --json" works) and
// returns the positional ones. A lone "-" is positional (stdin); "--" ends flags.
func (a *app) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, flag.ErrHelp // fs.Usage has printed the help
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...) // everything after "--" is positional
			break
		}
		// fs.Parse stopped at a positional argument: keep it, parse on.
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return pos, nil
}

// api returns the client for the resolved global flags; built on first use, after
// the flags are parsed.
func (a *app) api() *apiclient.Client {
	a.clientOnce.Do(func() {
		c := apiclient.New(a.g.timeout, 8)
		c.RouterURL = strings.TrimRight(a.g.routerURL, "/")
		c.IngestURL = strings.TrimRight(a.g.ingestURL, "/")
		c.CAMSURL = strings.TrimRight(a.g.camsURL, "/")
		c.APIKey = a.g.apiKey
		a.client = c
	})
	return a.client
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func wantArgs(args []string, n int, what string) error {
	if len(args) != n {
		return usagef("expected %s, got %d argument(s)", what, len(args))
	}
	return nil
}

func orDash(s string) string { return cmp.Or(s, "-") }

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
