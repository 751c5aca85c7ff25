package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/msgrouter/msgrouter/internal/apiclient"
)

// agentCommands are the subcommands of routerctl agents.
func agentCommands() []command {
	withSub := func(sub string, build func(*app, *pflag.FlagSet, string) runFunc) func(*app, *pflag.FlagSet) runFunc {
		return func(a *app, fs *pflag.FlagSet) runFunc { return build(a, fs, sub) }
	}
	return []command{
		{use: "list [--limit N] [--cursor C] [--all]", short: "list registered agents", args: exactArgs(0, "no arguments"), build: agentsList},
		{use: "get <address>", short: "show one agent", args: exactArgs(1, "one agent address"), build: withSub("get", agentsGetDelete)},
		{use: "create <address> --type NATS_SUBJECT|HTTP_ENDPOINT --inbox NAME [--description D] [--owner-team T] [--status S] [--inactive-policy REJECT|HOLD] [credential flags]", short: "register an agent", args: exactArgs(1, "one agent address"), build: withSub("create", agentsWrite)},
		{use: "update <address> [--type T] [--inbox NAME] [--description D] [--owner-team T] [--status S] [--inactive-policy P] [credential flags | --auth-none]", short: "change the given fields only", args: exactArgs(1, "one agent address"), build: withSub("update", agentsWrite)},
		{use: "delete <address>", short: "remove an agent", args: exactArgs(1, "one agent address"), build: withSub("delete", agentsGetDelete)},
		{use: "health <address> HEALTHY|UNHEALTHY [--details TEXT]", short: "report an agent's health (UNHEALTHY marks it INACTIVE)", args: exactArgs(2, "an agent address and HEALTHY or UNHEALTHY"), build: agentsHealth},
	}
}

func agentsList(a *app, fs *pflag.FlagSet) runFunc {
	limit := fs.Int("limit", 100, "page size; with --all, how many per request")
	cursor := fs.String("cursor", "", "continue from this cursor")
	all := fs.Bool("all", false, "follow the cursors and list every agent")
	return func(ctx context.Context, args []string) error {
		if *limit < 1 {
			return usagef("--limit must be at least 1")
		}
		out := &apiclient.AgentPage{Items: []apiclient.Agent{}}
		c := *cursor
		for {
			p, err := a.api().ListAgents(ctx, *limit, c)
			if err != nil {
				return err
			}
			out.Items = append(out.Items, p.Items...)
			out.NextCursor = p.NextCursor
			if !*all || p.NextCursor == "" || p.NextCursor == c {
				break
			}
			c = p.NextCursor
		}
		if a.g.json {
			return a.printJSON(out)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tTYPE\tINBOX\tSTATUS\tOWNER")
		for _, ag := range out.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ag.AIAgentAddress, ag.InboxDestinationType, ag.InboxName, orDash(ag.Status), orDash(ag.OwnerTeam))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if out.NextCursor != "" {
			fmt.Fprintf(a.stderr, "more: --cursor %s (or --all)\n", out.NextCursor)
		}
		return nil
	}
}

func (a *app) printAgent(ag *apiclient.Agent) error {
	if a.g.json {
		return a.printJSON(ag)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	for _, row := range [][2]string{
		{"address", ag.AIAgentAddress},
		{"type", ag.InboxDestinationType},
		{"inbox", ag.InboxName},
		{"status", orDash(ag.Status)},
		{"description", orDash(ag.Description)},
		{"ownerTeam", orDash(ag.OwnerTeam)},
		{"registered", fmtTime(ag.RegistrationTimestamp)},
		{"updated", fmtTime(ag.LastUpdatedTimestamp)},
		{"updatedBy", orDash(ag.UpdatedBy)},
		{"inactivePolicy", orDash(ag.InactivePolicy)},
		{"inboxAuth", authSummary(ag.InboxAuth)},
		{"signingSecrets", secretsSummary(ag.SigningSecrets)},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

func agentsGetDelete(a *app, fs *pflag.FlagSet, sub string) runFunc {
	return func(ctx context.Context, args []string) error {
		if sub == "get" {
			ag, err := a.api().GetAgent(ctx, args[0])
			if err != nil {
				return err
			}
			return a.printAgent(ag)
		}
		if err := a.api().DeleteAgent(ctx, args[0]); err != nil {
			return err
		}
		if a.g.json {
			return a.printJSON(map[string]string{"deleted": args[0]})
		}
		fmt.Fprintf(a.stdout, "deleted %s\n", args[0])
		return nil
	}
}

func agentsWrite(a *app, fs *pflag.FlagSet, sub string) runFunc {
	typ := fs.String("type", "", "inbox destination type: NATS_SUBJECT or HTTP_ENDPOINT")
	inbox := fs.String("inbox", "", "inbox name: a NATS subject or an http(s) URL")
	desc := fs.String("description", "", "description")
	owner := fs.String("owner-team", "", "owning team")
	status := fs.String("status", "", "ACTIVE or INACTIVE")
	policy := fs.String("inactive-policy", "", "REJECT (default) or HOLD: what happens to messages while the agent is INACTIVE")
	cf := credentialFlags(fs, sub == "update")
	return func(ctx context.Context, args []string) error {
		*typ, *status, *policy = strings.ToUpper(*typ), strings.ToUpper(*status), strings.ToUpper(*policy)
		if *typ != "" && *typ != apiclient.TypeNATSSubject && *typ != apiclient.TypeHTTPEndpoint {
			return usagef("--type must be NATS_SUBJECT or HTTP_ENDPOINT")
		}
		if *policy != "" && *policy != "REJECT" && *policy != "HOLD" {
			return usagef("--inactive-policy must be REJECT or HOLD")
		}
		auth, secrets, err := cf.read(a.stdin)
		if err != nil {
			return err
		}
		if sub == "create" {
			if *typ == "" || *inbox == "" {
				return usagef("agents create needs --type and --inbox")
			}
			ag, err := a.api().CreateAgent(ctx, &apiclient.Agent{
				AIAgentAddress: args[0], InboxDestinationType: *typ, InboxName: *inbox,
				Status: *status, Description: *desc, OwnerTeam: *owner,
				InactivePolicy: *policy, InboxAuth: auth, SigningSecrets: secrets,
			})
			if err != nil {
				return err
			}
			return a.printAgent(ag)
		}
		// Only the flags given on the command line are sent: a partial update.
		var u apiclient.AgentUpdate
		fields := map[string]struct {
			field **string
			value *string
		}{
			"type": {&u.InboxDestinationType, typ}, "inbox": {&u.InboxName, inbox},
			"description": {&u.Description, desc}, "owner-team": {&u.OwnerTeam, owner},
			"status": {&u.Status, status}, "inactive-policy": {&u.InactivePolicy, policy},
		}
		fs.Visit(func(f *pflag.Flag) {
			if fv, ok := fields[f.Name]; ok {
				*fv.field = fv.value
			}
		})
		switch {
		case *cf.none:
			u.InboxAuth = json.RawMessage("null")
		case auth != nil:
			u.InboxAuth = auth
		}
		if secrets != nil {
			u.SigningSecrets = &secrets
		}
		if u.InboxDestinationType == nil && u.InboxName == nil && u.Description == nil && u.OwnerTeam == nil &&
			u.Status == nil && u.InactivePolicy == nil && u.InboxAuth == nil && u.SigningSecrets == nil {
			return usagef("agents update needs at least one of --type, --inbox, --description, --owner-team, --status, --inactive-policy or a credential flag")
		}
		ag, err := a.api().UpdateAgent(ctx, args[0], &u)
		if err != nil {
			return err
		}
		return a.printAgent(ag)
	}
}

func agentsHealth(a *app, fs *pflag.FlagSet) runFunc {
	details := fs.String("details", "", "free-text details")
	return func(ctx context.Context, args []string) error {
		st := strings.ToUpper(args[1])
		if st != "HEALTHY" && st != "UNHEALTHY" {
			return usagef("health status must be HEALTHY or UNHEALTHY, not %q", args[1])
		}
		if err := a.api().ReportHealth(ctx, &apiclient.HealthReport{AIAgentAddress: args[0], Status: st, Details: *details}); err != nil {
			return err
		}
		if a.g.json {
			return a.printJSON(map[string]string{"aiAgentAddress": args[0], "status": st})
		}
		fmt.Fprintf(a.stdout, "reported %s %s\n", args[0], st)
		return nil
	}
}

// credFlags are the credential flags of agents create/update (issue 15). Secrets
// are read from files or stdin ("-"), never taken from the command line, where
// they would show in shell history and the process list.
type credFlags struct {
	bearerFile, headerName, headerValueFile, basicUser, basicPasswordFile, signingFile *string
	none                                                                               *bool
}

func credentialFlags(fs *pflag.FlagSet, update bool) *credFlags {
	c := &credFlags{
		bearerFile:        fs.String("auth-bearer-file", "", "file holding the inbox's bearer token (- = stdin): Authorization: Bearer <token>"),
		headerName:        fs.String("auth-header-name", "", "header the inbox wants its key in, e.g. X-API-Key (with --auth-header-value-file)"),
		headerValueFile:   fs.String("auth-header-value-file", "", "file holding that header's value (- = stdin)"),
		basicUser:         fs.String("auth-basic-user", "", "basic auth user name (with --auth-basic-password-file)"),
		basicPasswordFile: fs.String("auth-basic-password-file", "", "file holding the basic auth password (- = stdin)"),
		signingFile:       fs.String("signing-secret-file", "", "file holding the agent's whsec_ signing secrets, one a line (- = stdin); replaces the stored ones"),
		none:              new(bool),
	}
	if update {
		c.none = fs.Bool("auth-none", false, "remove the inbox credentials")
	}
	return c
}

// read returns the credentials and signing secrets the flags give (nil when none).
func (c *credFlags) read(stdin io.Reader) (*apiclient.InboxAuth, []string, error) {
	stdinUsed := false
	file := func(flagName, path string) (string, error) {
		var b []byte
		var err error
		if path == "-" {
			if stdinUsed {
				return "", usagef("only one flag can read stdin (-)")
			}
			stdinUsed = true
			b, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
		} else {
			b, err = os.ReadFile(path)
		}
		if err != nil {
			return "", fmt.Errorf("--%s: %w", flagName, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if strings.TrimSpace(v) == "" {
			return "", usagef("--%s: the file is empty", flagName)
		}
		return v, nil
	}
	// paired reads the secret of a credential given as a name flag and a file
	// flag, which go together.
	paired := func(nameFlag, name, fileFlag, path string) (string, error) {
		if name == "" || path == "" {
			return "", usagef("--%s and --%s go together", nameFlag, fileFlag)
		}
		return file(fileFlag, path)
	}
	// One entry per kind of inbox credentials, in the order their errors are
	// reported: whether its flags were given, and the credentials they make.
	kinds := []struct {
		given bool
		read  func() (*apiclient.InboxAuth, error)
	}{
		{*c.bearerFile != "", func() (*apiclient.InboxAuth, error) {
			tok, err := file("auth-bearer-file", *c.bearerFile)
			return &apiclient.InboxAuth{Type: "BEARER", Token: tok}, err
		}},
		{*c.headerName != "" || *c.headerValueFile != "", func() (*apiclient.InboxAuth, error) {
			v, err := paired("auth-header-name", *c.headerName, "auth-header-value-file", *c.headerValueFile)
			return &apiclient.InboxAuth{Type: "HEADER", Name: *c.headerName, Value: v}, err
		}},
		{*c.basicUser != "" || *c.basicPasswordFile != "", func() (*apiclient.InboxAuth, error) {
			pw, err := paired("auth-basic-user", *c.basicUser, "auth-basic-password-file", *c.basicPasswordFile)
			return &apiclient.InboxAuth{Type: "BASIC", Username: *c.basicUser, Password: pw}, err
		}},
		{*c.none, func() (*apiclient.InboxAuth, error) { return nil, nil }},
	}
	var auth *apiclient.InboxAuth
	given := 0
	for _, k := range kinds {
		if !k.given {
			continue
		}
		given++
		a, err := k.read()
		if err != nil {
			return nil, nil, err
		}
		auth = a
	}
	if given > 1 {
		return nil, nil, usagef("give one kind of inbox credentials: --auth-bearer-file, --auth-header-*, --auth-basic-* or --auth-none")
	}
	var secrets []string
	if *c.signingFile != "" {
		v, err := file("signing-secret-file", *c.signingFile)
		if err != nil {
			return nil, nil, err
		}
		for _, line := range strings.Split(v, "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				secrets = append(secrets, line)
			}
		}
	}
	return auth, secrets, nil
}

// authSummary shows the credentials' type and non-secret parts only (CAMS answers
// carry the secrets masked anyway).
func authSummary(a *apiclient.InboxAuth) string {
	switch {
	case a == nil:
		return "-"
	case a.Name != "":
		return a.Type + " (" + a.Name + ", value masked)"
	case a.Username != "":
		return a.Type + " (user " + a.Username + ", password masked)"
	}
	return a.Type + " (masked)"
}

func secretsSummary(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d (masked)", len(s))
}
