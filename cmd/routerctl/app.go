package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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

// errUsageShown means the usage text was printed to stderr: exit 2, print nothing more.
var errUsageShown = errors.New("usage shown")

// globals are the flags every command accepts, before or after its name.
type globals struct {
	routerURL, ingestURL, camsURL, natsURL, apiKey string
	json                                           bool
	timeout                                        time.Duration
}

func (g *globals) register(fs *pflag.FlagSet) {
	fs.StringVar(&g.routerURL, "router-url", g.routerURL, "router admin API `URL` (env ROUTER_URL)")
	fs.StringVar(&g.ingestURL, "ingest-url", g.ingestURL, "ingest API `URL` (env INGEST_URL)")
	fs.StringVar(&g.camsURL, "cams-url", g.camsURL, "CAMS API `URL` (env CAMS_API_URL)")
	fs.StringVar(&g.natsURL, "nats-url", g.natsURL, "NATS server `URL` (env NATS_URL)")
	fs.StringVar(&g.apiKey, "api-key", g.apiKey, "bearer `key` sent to every API (env ROUTERCTL_API_KEY)")
	fs.BoolVar(&g.json, "json", g.json, "machine-readable JSON output")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "per-request `timeout`")
}

// runFunc runs a command with its positional arguments, after its flags are parsed.
type runFunc func(ctx context.Context, args []string) error

// command is one routerctl command: build registers its flags on fs and returns
// what runs once they are parsed; sub lists subcommands instead (agents). args,
// when set, checks the positional arguments before build's function runs (it
// checks them itself when args is nil).
type command struct {
	use, short, long string
	args             cobra.PositionalArgs
	build            func(a *app, fs *pflag.FlagSet) runFunc
	sub              func() []command
}

func commands() []command {
	return []command{
		{use: "status <messageId>", short: "show a message's status and delivery history", args: exactArgs(1, "one messageId"), build: cmdStatus,
			long: "Show a message's status, destination and delivery history."},
		{use: "list [--status S] [--agent A] [--limit N] [--cursor C] [--all]", short: "list messages, newest first", args: exactArgs(0, "no arguments"), build: cmdList,
			long: "List messages, newest first."},
		{use: "dead-letters [--agent A] [--reason R] [--limit N] [--all]", short: "list DEAD_LETTERED and REJECTED messages", args: exactArgs(0, "no arguments"), build: cmdDeadLetters,
			long: "List DEAD_LETTERED and REJECTED messages, newest first."},
		{use: "replay <messageId>... | - | --all [--status S] [--agent A] [--reason R] [--since T]", short: "replay dead letters by id, from stdin, or by filter", build: cmdReplay,
			long: "Replay REJECTED or DEAD_LETTERED messages: by id, by ids read from stdin (\"-\" or --stdin,\n" +
				"one or more per line), or every dead letter matching a filter (--all)."},
		{use: "send --agent A --payload JSON [--service S] [--correlation-id C] [--sender-message-id M] [--wait] [--count N [--batch B]]", short: "submit a message through ingest", args: exactArgs(0, "no arguments (the payload goes in --payload)"), build: cmdSend,
			long: "Submit a message through ingest (POST /v1/messages) and print its messageId.\n" +
				"With --wait, poll the router until the message is terminal and print its status\n" +
				"(exit 1 unless it was DELIVERED).\n" +
				"With --count N, submit N copies (a --sender-message-id gets the suffix -1 ... -N);\n" +
				"with --batch B, in batches of B through POST /v1/messages/batch. One line per\n" +
				"message: its messageId, or its error (exit 1 if any was refused)."},
		{use: "agents <list|get|create|update|delete|health> ...", short: "manage agent registrations in CAMS", sub: agentCommands},
		{use: "tail <subject> [--count N] [--from-start]", short: "print messages as they arrive on a NATS inbox subject", args: exactArgs(1, "one subject"), build: cmdTail,
			long: "Print each message (headers and payload) published to a NATS inbox subject as it\n" +
				"arrives. When a JetStream stream captures the subject, an ordered consumer reads it\n" +
				"(so stored messages can be replayed with --from-start); otherwise a plain\n" +
				"subscription does. Stops on Ctrl-C or after --count messages."},
		{use: "bench [--mode http|nats] [--inbox nats|http|both] [--clients N | --rate R] [--duration D | --count N] ...", short: "load-test a running msgrouter end to end", args: exactArgs(0, "no arguments"), build: cmdBench,
			long: "Load-test a running msgrouter end to end. Registers --agents agents in CAMS whose\n" +
				"inboxes this command owns (a JetStream stream BENCH_INBOX_<run> and/or an HTTP\n" +
				"receiver), sends messages through ingest (--mode http) or straight to\n" +
				"router.messages (--mode nats), and reports throughput, submit→accept,\n" +
				"accept→delivery and submit→delivery latencies, errors, duplicates and missing\n" +
				"messages. With --rate it runs open loop and measures from each message's\n" +
				"scheduled send time. HTTP inboxes on loopback need the router to run with\n" +
				"DELIVERY_ALLOW_PRIVATE_NETWORKS=true. Everything it creates is removed at the end.\n" +
				"Exit 1 when a message went missing or nothing was accepted."},
		{use: "audit [--since 1h] [--grace 1m] [--pending-threshold 5m] [--database-url URL] [--json]", short: "reconcile the stream with the router's records; exit 1 on a gap", args: exactArgs(0, "no arguments"), build: cmdAudit,
			long: "Reconcile what JetStream accepted (stream ROUTER_MESSAGES, read with an ordered\n" +
				"ephemeral consumer: the router's consumer is not disturbed) with the router's\n" +
				"records in Postgres: counts by status, every messageId the stream holds that\n" +
				"Postgres does not know after the grace period, and every message PENDING longer\n" +
				"than the threshold. Exit status 1 when a message is missing, 0 otherwise.\n" +
				"Needs --nats-url (NATS_URL) and --database-url (DATABASE_URL; SQLAlchemy forms\n" +
				"such as postgresql+asyncpg:// are accepted)."},
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

// usageTemplate is cobra's, in the words routerctl has always used ("usage:",
// "global flags", the exit statuses).
const usageTemplate = `usage: {{if .HasParent}}{{.UseLine}}{{else}}routerctl [global flags] <command> [flags] [args]{{end}}
{{- if .HasAvailableSubCommands}}

commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}
{{- if and .HasParent .HasAvailableLocalFlags}}

flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}
{{- if .HasParent}}

global flags (--router-url, --ingest-url, --cams-url, --nats-url, --api-key, --json, --timeout): see routerctl help
{{- else}}

global flags (accepted before or after the command):
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}

exit status: 0 ok, 1 not found or failed, 2 bad usage. ` + "`routerctl <command> --help`" + ` shows a command's flags.
{{- end}}
`

func init() {
	// List the commands in the order of the pipeline (commands()), not alphabetically.
	cobra.EnableCommandSorting = false
}

// root builds the command tree: cobra parses the flags (anywhere among the
// arguments; "--" ends them, a lone "-" is positional), prints help and generates
// shell completion (routerctl completion bash|zsh|fish).
func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "routerctl",
		Short: "routerctl: the msgrouter operators' CLI",
		Long:  "routerctl: the msgrouter operators' CLI",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q (routerctl help lists them)", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(a.stderr, cmd.UsageString())
			return errUsageShown
		},
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetUsageTemplate(usageTemplate)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usagef("%s: %s", cmd.CommandPath(), flagError(err))
	})
	a.g.register(root.PersistentFlags())
	// help <command> for an unknown command is bad usage (exit 2), as before cobra.
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "show help",
		RunE: func(_ *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return usagef("unknown command %q (routerctl help lists them)", strings.Join(args, " "))
			}
			return cmd.Help()
		},
	})
	for _, c := range commands() {
		root.AddCommand(a.cobraCommand(c, root.Name()))
	}
	// cobra's completion command, made strict: an unknown shell is bad usage.
	root.InitDefaultCompletionCmd()
	if comp, _, err := root.Find([]string{"completion"}); err == nil && comp != root {
		comp.Short = "print a shell completion script: completion bash|zsh|fish|powershell"
		comp.Args = func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown shell %q (completion bash|zsh|fish|powershell)", args[0])
			}
			return nil
		}
		comp.RunE = func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(a.stderr, cmd.UsageString())
			return errUsageShown
		}
	}
	return root
}

func (a *app) cobraCommand(c command, parent string) *cobra.Command {
	name, _, _ := strings.Cut(c.use, " ")
	cmd := &cobra.Command{Use: c.use, Short: c.short, Long: c.long}
	if c.long == "" {
		cmd.Long = strings.ToUpper(c.short[:1]) + c.short[1:] + "."
	}
	if c.sub != nil {
		var names []string
		for _, s := range c.sub() {
			cmd.AddCommand(a.cobraCommand(s, parent+" "+name))
			sub, _, _ := strings.Cut(s.use, " ")
			names = append(names, sub)
		}
		cmd.Args = func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown %s subcommand %q (%s %s --help lists them)", name, args[0], parent, name)
			}
			return nil
		}
		cmd.RunE = func(*cobra.Command, []string) error {
			return usagef("%s needs a subcommand: %s", name, strings.Join(names, ", "))
		}
		return cmd
	}
	cmd.Args = c.args
	run := c.build(a, cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error { return run(cmd.Context(), args) }
	return cmd
}

// flagError words pflag's errors as routerctl always has (Go's flag package), so
// scripts matching them keep working.
func flagError(err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		return "flag provided but not defined: -" + name
	}
	return strings.Replace(msg, "invalid argument", "invalid value", 1)
}

// run executes one command line and returns the exit status.
func (a *app) run(ctx context.Context, args []string) int {
	root := a.root()
	if args == nil {
		args = []string{} // cobra reads os.Args when given nil
	}
	root.SetArgs(args)
	return a.fail(root.ExecuteContext(ctx))
}

// fail prints err the contract's way and maps it to an exit status.
func (a *app) fail(err error) int {
	var ue *usageError
	var apiErr *apiclient.Error
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsageShown):
		return exitUsage
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

// exactArgs wants exactly n positional arguments, described by what in the
// usage error ("expected one messageId, got 2 argument(s)").
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("expected %s, got %d argument(s)", what, len(args))
		}
		return nil
	}
}

func orDash(s string) string { return cmp.Or(s, "-") }

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
