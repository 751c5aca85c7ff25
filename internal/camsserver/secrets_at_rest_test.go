package camsserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/cams/mapping/mappingtest"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/migrate"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

func newKey(t *testing.T) []byte {
	k := make([]byte, SecretsKeyBytes)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

// TestSecretsEncryptedAtRest (issue 15, DESIGN §4): with CAMS_SECRETS_KEY Postgres
// holds only ciphertext (read straight from the table), each value with its key id;
// rotate-secrets-key re-encrypts with a new key, after which the old key is no
// longer needed; a value sealed with an unknown key is an error, never garbage.
func TestSecretsEncryptedAtRest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewURL(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = migrate.Apply(ctx, pool, migrate.CAMS)
	require.NoError(t, err)
	oldKey, newKeyBytes := newKey(t), newKey(t)
	oldBox, err := NewSecretBox(oldKey, nil)
	require.NoError(t, err)
	h := NewHandler(HandlerConfig{Store: NewStore(pool, WithSecretBox(oldBox)), Registerer: prometheus.NewRegistry()})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b := &serverBundle{h: h, srv: srv}

	token, sig, plainSig := "bearer-planted-7c2e", mappingtest.Secret(32), mappingtest.Secret(48)
	a := b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
		"aiAgentAddress": "enc@x", "inboxDestinationType": mapping.TypeHTTPEndpoint, "inboxName": "https://a.example/in",
		"inboxAuth": map[string]any{"type": "BEARER", "token": token}, "signingSecrets": []string{sig},
	}, "")
	require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
	// A row written before the key was set: plain text, still readable.
	_, err = NewStore(pool).Create(ctx, mapping.Mapping{AIAgentAddress: "plain@x", InboxDestinationType: mapping.TypeHTTPEndpoint,
		InboxName: "https://a.example/p", Status: mapping.StatusActive, InactivePolicy: mapping.InactivePolicyReject, SigningSecrets: []string{plainSig}})
	require.NoError(t, err)

	raw := func(addr string) (secrets []string, auth *string) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT signing_secrets, inbox_auth FROM agent_inboxes WHERE ai_agent_address = $1`, addr).Scan(&secrets, &auth))
		return secrets, auth
	}
	requireSealed := func(addr, keyID string) {
		t.Helper()
		secrets, auth := raw(addr)
		all := append(secrets, *auth)
		for _, v := range all {
			id, ok := Sealed(v)
			require.True(t, ok, "stored in clear: %.12s…", v)
			require.Equal(t, keyID, id)
		}
		dump := strings.Join(all, " ")
		require.NotContains(t, dump, token)
		require.NotContains(t, dump, sig[6:])
		require.NotContains(t, dump, "BEARER")
	}
	requireSealed("enc@x", oldBox.KeyID())
	full := b.call(t, "GET", agentPath("enc@x")+"?includeSecrets=true", nil, "").mapping(t)
	require.Equal(t, token, full.InboxAuth.Token)
	require.Equal(t, []string{sig}, full.SigningSecrets)

	// A ciphertext moved to another agent does not open.
	secrets, _ := raw("enc@x")
	_, err = pool.Exec(ctx, `UPDATE agent_inboxes SET signing_secrets = $1 WHERE ai_agent_address = 'plain@x'`, secrets)
	require.NoError(t, err)
	_, err = NewStore(pool, WithSecretBox(oldBox)).Get(ctx, "plain@x")
	require.Error(t, err)
	_, err = pool.Exec(ctx, `UPDATE agent_inboxes SET signing_secrets = $1 WHERE ai_agent_address = 'plain@x'`, []string{plainSig})
	require.NoError(t, err)

	// Rotation: CAMS_SECRETS_KEY=new, CAMS_SECRETS_KEY_PREVIOUS=old.
	cfg := config.CAMS{DatabaseURL: dbURL,
		SecretsKey: base64.StdEncoding.EncodeToString(newKeyBytes), SecretsKeyPrevious: base64.StdEncoding.EncodeToString(oldKey)}
	n, err := RotateSecretsKey(ctx, cfg)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	newOnly, err := NewSecretBox(newKeyBytes, nil)
	require.NoError(t, err)
	requireSealed("enc@x", newOnly.KeyID())
	ps, _ := raw("plain@x")
	id, ok := Sealed(ps[0])
	require.True(t, ok, "plain values are encrypted by the rotation")
	require.Equal(t, newOnly.KeyID(), id)
	m, err := NewStore(pool, WithSecretBox(newOnly)).Get(ctx, "enc@x")
	require.NoError(t, err, "the old key is no longer needed")
	require.Equal(t, token, m.InboxAuth.Token)
	m, err = NewStore(pool, WithSecretBox(newOnly)).Get(ctx, "plain@x")
	require.NoError(t, err)
	require.Equal(t, []string{plainSig}, m.SigningSecrets)

	// With the old key only, the values do not open: an error naming the key id.
	_, err = NewStore(pool, WithSecretBox(oldBox)).Get(ctx, "enc@x")
	require.ErrorIs(t, err, ErrUnknownSecretsKey)
	require.Contains(t, err.Error(), newOnly.KeyID())
	require.NotContains(t, err.Error(), token)
}

func TestSecretsKeyConfig(t *testing.T) {
	t.Parallel()
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	for name, c := range map[string]struct {
		vars map[string]string
		want string
	}{
		"short":          {map[string]string{"CAMS_SECRETS_KEY": base64.StdEncoding.EncodeToString(make([]byte, 16))}, "CAMS_SECRETS_KEY: must be base64 of 32 bytes"},
		"not base64":     {map[string]string{"CAMS_SECRETS_KEY": "not base64 at all!"}, "CAMS_SECRETS_KEY: is not base64"},
		"previous bad":   {map[string]string{"CAMS_SECRETS_KEY": good, "CAMS_SECRETS_KEY_PREVIOUS": "xx"}, "CAMS_SECRETS_KEY_PREVIOUS:"},
		"previous alone": {map[string]string{"CAMS_SECRETS_KEY_PREVIOUS": good}, "CAMS_SECRETS_KEY_PREVIOUS: is set but"},
	} {
		_, err := config.LoadCAMS(config.FromMap(c.vars))
		require.ErrorContains(t, err, c.want, name)
		require.NotContains(t, err.Error(), "not base64 at all", name)
	}
	cfg, err := config.LoadCAMS(config.FromMap(map[string]string{"CAMS_SECRETS_KEY": good}))
	require.NoError(t, err)
	box, err := SecretBoxFromConfig(cfg)
	require.NoError(t, err)
	require.NotEmpty(t, box.KeyID())
	for _, a := range cfg.LogAttrs() {
		require.NotContains(t, a.Value.String(), good)
	}
}
