package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBadUsageExits2: an unknown flag or command is bad usage (exit 2, DESIGN §10)
// at every level of the command tree, with the error on stderr and nothing on stdout.
func TestBadUsageExits2(t *testing.T) {
	t.Parallel()
	var c cli
	for _, tc := range []struct {
		args []string
		in   string
	}{
		{[]string{"--bogus", "list"}, "flag provided but not defined: -bogus"},
		{[]string{"status", "m-1", "--bogus"}, "routerctl status: flag provided but not defined: -bogus"},
		{[]string{"agents", "list", "--bogus"}, "routerctl agents list: flag provided but not defined: -bogus"},
		{[]string{"bench", "--inbox-replicas", "many"}, "invalid value"},
		{[]string{"replay", "-x"}, "routerctl replay"},
		{[]string{"statuz", "m-1"}, `error: unknown command "statuz"`},
		{[]string{"help", "statuz"}, `error: unknown command "statuz"`},
		{[]string{"agents", "explode", "--json"}, `unknown agents subcommand "explode"`},
		{[]string{"completion", "tcsh"}, "error:"},
	} {
		o := c.run(t, tc.args...)
		require.Equal(t, 2, o.code, "%v: %+v", tc.args, o)
		require.Contains(t, o.stderr, tc.in, "%v", tc.args)
		require.Empty(t, o.stdout, "%v", tc.args)
	}
}

// TestFlagsAfterArguments: global and command flags are accepted before and after
// the positional arguments; "--" ends the flags.
func TestFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	f := newFakeRouter(t, sampleMessages(8))
	var c cli
	for _, args := range [][]string{
		{"--router-url", f.srv.URL, "list", "--limit", "2", "--status", "DELIVERED", "--json"},
		{"list", "--json", "--router-url", f.srv.URL, "--status", "DELIVERED", "--limit", "2"},
		{"list", "--limit=2", "--status=DELIVERED", "--json", "--router-url=" + f.srv.URL},
	} {
		o := c.run(t, args...)
		require.Equal(t, 0, o.code, "%v: %+v", args, o)
		require.Contains(t, o.stdout, `"status": "DELIVERED"`, "%v", args)
		require.NotContains(t, o.stdout, `"status": "PENDING"`, "%v", args)
	}
	reqs := f.log()
	require.Len(t, reqs, 3)
	for _, r := range reqs {
		require.Contains(t, r, "limit=2")
		require.Contains(t, r, "status=DELIVERED")
	}

	// A positional argument after flags, and one after "--" that looks like a flag.
	o := c.run(t, "status", "--router-url", f.srv.URL, "--json", "m-001")
	require.Equal(t, 0, o.code, "%+v", o)
	require.Contains(t, o.stdout, `"messageId": "m-001"`)
	o = c.run(t, "status", "--router-url", f.srv.URL, "--", "--m-001")
	require.Equal(t, 1, o.code, "%+v", o)
	require.Contains(t, o.stderr, "message --m-001 is unknown")
}

// TestCompletion: routerctl completion bash|zsh|fish prints a script naming the
// commands' completion entry point.
func TestCompletion(t *testing.T) {
	t.Parallel()
	var c cli
	for _, sh := range []string{"bash", "zsh", "fish"} {
		o := c.run(t, "completion", sh)
		require.Equal(t, 0, o.code, "%s: %s", sh, o.stderr)
		require.Contains(t, o.stdout, "routerctl", sh)
	}
	// The completion entry point lists the commands and a command's flags.
	o := c.run(t, "__complete", "")
	require.Equal(t, 0, o.code, o.stderr)
	require.Contains(t, o.stdout, "dead-letters")
	o = c.run(t, "__complete", "bench", "--inbox-")
	require.Equal(t, 0, o.code, o.stderr)
	require.Contains(t, o.stdout, "--inbox-replicas")
}
