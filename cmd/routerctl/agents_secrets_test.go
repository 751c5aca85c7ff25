package main

import (
	"context"
	"encoding/base64"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/camsserver"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

// TestAgentsCredentialFlags (issue 15): routerctl reads inbox credentials and
// signing secrets from files or stdin, CAMS stores them, and no routerctl output
// (table or --json, create, update, get, list) ever shows them.
func TestAgentsCredentialFlags(t *testing.T) {
	t.Parallel()
	store := camsserver.NewStore(pgtest.New(t))
	srv := httptest.NewServer(camsserver.NewHandler(camsserver.HandlerConfig{Store: store, Registerer: prometheus.NewRegistry()}))
	t.Cleanup(srv.Close)
	env := map[string]string{"CAMS_API_URL": srv.URL}
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(v+"\n"), 0o600))
		return p
	}
	token, apiKey, password := "planted-tok-4f1a", "planted-key-88c0", "planted-pw-d3e9"
	sig1 := "whsec_" + base64.StdEncoding.EncodeToString([]byte("planted-signing-key-1-abcdef"))
	sig2 := "whsec_" + base64.StdEncoding.EncodeToString([]byte("planted-signing-key-2-abcdef"))
	ctx := context.Background()
	var outputs []string
	run := func(c cli, args ...string) out {
		t.Helper()
		o := c.run(t, args...)
		require.Equal(t, 0, o.code, "%v: %s %s", args, o.stdout, o.stderr)
		outputs = append(outputs, o.stdout, o.stderr)
		return o
	}

	run(cli{env: env, stdin: token + "\n"}, "agents", "create", "a@x", "--type", "HTTP_ENDPOINT", "--inbox", "https://a.example/in",
		"--auth-bearer-file", "-", "--signing-secret-file", write("sigs", sig1+"\n"+sig2), "--inactive-policy", "hold")
	m, err := store.Get(ctx, "a@x")
	require.NoError(t, err)
	require.Equal(t, &mapping.InboxAuth{Type: mapping.AuthBearer, Token: token}, m.InboxAuth)
	require.Equal(t, []string{sig1, sig2}, m.SigningSecrets)
	require.Equal(t, mapping.InactivePolicyHold, m.InactivePolicy)

	run(cli{env: env}, "agents", "update", "a@x", "--auth-header-name", "X-API-Key", "--auth-header-value-file", write("key", apiKey))
	m, _ = store.Get(ctx, "a@x")
	require.Equal(t, &mapping.InboxAuth{Type: mapping.AuthHeader, Name: "X-API-Key", Value: apiKey}, m.InboxAuth)
	require.Equal(t, []string{sig1, sig2}, m.SigningSecrets, "untouched")

	o := run(cli{env: env, stdin: password}, "agents", "update", "a@x", "--auth-basic-user", "u1", "--auth-basic-password-file", "-")
	require.Contains(t, o.stdout, "BASIC (user u1, password masked)")
	m, _ = store.Get(ctx, "a@x")
	require.Equal(t, &mapping.InboxAuth{Type: mapping.AuthBasic, Username: "u1", Password: password}, m.InboxAuth)

	run(cli{env: env}, "agents", "get", "a@x")
	run(cli{env: env}, "--json", "agents", "get", "a@x")
	run(cli{env: env}, "agents", "list")
	run(cli{env: env}, "--json", "agents", "list")

	run(cli{env: env}, "agents", "update", "a@x", "--auth-none")
	m, _ = store.Get(ctx, "a@x")
	require.Nil(t, m.InboxAuth)

	for _, o := range outputs {
		for _, s := range []string{token, apiKey, password, sig1[6:], sig2[6:]} {
			require.NotContains(t, o, s)
		}
	}
	require.Contains(t, strings.Join(outputs, ""), `"***"`)

	// Usage errors: secrets only from files; kinds exclusive; a bad header 400.
	for _, args := range [][]string{
		{"agents", "update", "a@x", "--auth-header-name", "X-API-Key"},
		{"agents", "update", "a@x", "--auth-bearer-file", write("t", token), "--auth-none"},
		{"agents", "update", "a@x", "--auth-bearer-file", "-", "--signing-secret-file", "-"},
		{"agents", "update", "a@x", "--auth-bearer-file", write("empty", "")},
		{"agents", "update", "a@x", "--auth-header-name", "Content-Type", "--auth-header-value-file", write("v", apiKey)},
	} {
		o := cli{env: env, stdin: "x"}.run(t, args...)
		require.NotEqual(t, 0, o.code, "%v", args)
		require.NotContains(t, o.stdout+o.stderr, token)
		require.NotContains(t, o.stdout+o.stderr, apiKey)
	}
}

// A credential given as a name and a file needs both; two kinds at once are
// refused. Both are usage errors (exit 2), found before CAMS is asked.
func TestAgentsCredentialFlagUsage(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(f, []byte("s\n"), 0o600))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth-header-name", "X-Key"}, "--auth-header-name and --auth-header-value-file go together"},
		{[]string{"--auth-header-value-file", f}, "--auth-header-name and --auth-header-value-file go together"},
		{[]string{"--auth-basic-user", "u"}, "--auth-basic-user and --auth-basic-password-file go together"},
		{[]string{"--auth-basic-password-file", f}, "--auth-basic-user and --auth-basic-password-file go together"},
		{[]string{"--auth-bearer-file", f, "--auth-basic-user", "u", "--auth-basic-password-file", f}, "give one kind of inbox credentials"},
	} {
		o := cli{env: map[string]string{"CAMS_API_URL": "http://127.0.0.1:1"}}.run(t, append([]string{"agents", "update", "a@x"}, tc.args...)...)
		require.Equal(t, 2, o.code, "%v: %s", tc.args, o.stderr)
		require.Contains(t, o.stderr, tc.want, tc.args)
	}
}
