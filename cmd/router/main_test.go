package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/testutil/camstest"
	"github.com/msgrouter/msgrouter/internal/testutil/cmdtest"
	"github.com/msgrouter/msgrouter/internal/testutil/logtest"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

var binary = cmdtest.Binary{Name: "router"}

func TestMain(m *testing.M) { binary.Main(m) }

// Issue 14: a .env file as the Python Message Router Service's README has it —
// DATABASE_URL in SQLAlchemy's asyncpg form and CAMS_API_URL — starts the router
// binary unchanged, against the real Postgres and a CAMS, and a message flows.
func TestPythonServiceDotEnvStartsRouter(t *testing.T) {
	t.Parallel()
	bin := binary.Path(t)

	// The same Postgres the tests use, written as the Python service would.
	pc, err := pgx.ParseConfig(pgtest.NewURL(t))
	require.NoError(t, err)
	password := pc.Password
	if password == "" {
		password = "s3cret-py" // trust authentication ignores it; the log must not show it
	}
	host := pc.Host
	if strings.HasPrefix(host, "/") {
		host = "127.0.0.1" // the libpq default is the local socket; the README form is host:port
	}
	dbURL := fmt.Sprintf("postgresql+asyncpg://%s:%s@%s:%d/%s", pc.User, password, host, pc.Port, pc.Database)

	// A CAMS answering the contract's lookup (DESIGN §4) for one agent.
	camsSrv := camstest.Serve(t, mapping.Mapping{AIAgentAddress: "agent-sales@example.com",
		InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.sales.inbox", Status: mapping.StatusActive})

	dir := t.TempDir()
	dotenv := "# .env of the Message Router Service\nDATABASE_URL=" + dbURL + "\nCAMS_API_URL=" + camsSrv.URL + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".env"), []byte(dotenv), 0o600))

	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "INBOX", Subjects: []string{"agents.>"}})
	require.NoError(t, err)
	inbox, err := nc.SubscribeSync("agents.sales.inbox")
	require.NoError(t, err)

	addr := cmdtest.FreeAddr(t)
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "DATABASE_URL" && k != "CAMS_API_URL" && k != "ENV_FILE" && !strings.HasPrefix(k, "PG") {
			env = append(env, kv)
		}
	}
	stderr := &logtest.Buffer{}
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(env, "NATS_URL="+ns.URL, "ROUTER_ADDR="+addr, "LOG_FORMAT=text", "SHUTDOWN_TIMEOUT=5s", "OTEL_TRACES_EXPORTER=none")
	cmd.Stderr = stderr
	p := cmdtest.Start(t, cmd)
	p.WaitReady(t, "http://"+addr+"/health/ready", 30*time.Second) // Postgres and NATS answer
	client := &http.Client{Timeout: 5 * time.Second}

	// A message through CAMS to the inbox, recorded in that Postgres.
	id := uuid.NewString()
	msg := nats.NewMsg("router.messages")
	msg.Header.Set("Nats-Msg-Id", id)
	msg.Data = []byte(`{"aiAgentAddress":"agent-sales@example.com","payload":{"command":"processData","value":42}}`)
	_, err = js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)
	got, err := inbox.NextMsg(20 * time.Second)
	require.NoError(t, err, "delivered to the inbox CAMS named; stderr:\n%s", stderr.String())
	require.Equal(t, id, got.Header.Get("messageId"))
	require.Eventually(t, func() bool {
		resp, err := client.Get("http://" + addr + "/v1/messages/" + id)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var v struct{ Status string }
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return v.Status == "DELIVERED"
	}, 20*time.Second, 50*time.Millisecond)
	conn, err := pgx.Connect(t.Context(), fmt.Sprintf("host=%s port=%d user=%s dbname=%s password=%s", host, pc.Port, pc.User, pc.Database, password))
	require.NoError(t, err)
	defer conn.Close(t.Context())
	var status string
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT status FROM messages WHERE message_id = $1", id).Scan(&status))
	require.Equal(t, "DELIVERED", status, "the record is in the database the .env named")

	require.NoError(t, p.Terminate(t, 20*time.Second), "exit 0 after SIGTERM")
	logs := stderr.String()
	require.Contains(t, logs, "read configuration from a dotenv file")
	require.Contains(t, logs, "DATABASE_URL accepted in SQLAlchemy form")
	require.Equal(t, 1, strings.Count(logs, "SQLAlchemy form"), "one INFO line")
	require.NotContains(t, logs, password, "the password is never logged")
}

// A malformed .env stops the binary at start with one line naming file and line.
func TestMalformedDotEnvStopsRouter(t *testing.T) {
	t.Parallel()
	bin := binary.Path(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".env"), []byte("CAMS_API_URL=http://cams:8001\nDATABASE_URL=\"postgresql+asyncpg://u:topsecret@db/r\n"), 0o600))
	for _, tc := range []struct{ name, envFile, line string }{
		{"./.env", "", "router: .env, line 2: unterminated quoted value\n"},
		{"ENV_FILE missing", filepath.Join(dir, "nope.env"), "router: ENV_FILE: cannot read " + filepath.Join(dir, "nope.env") + ": no such file or directory\n"},
	} {
		cmd := exec.Command(bin)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "ENV_FILE="+tc.envFile)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, tc.name)
		require.Equal(t, 2, exit.ExitCode(), tc.name)
		require.Equal(t, tc.line, stderr.String(), tc.name)
	}
}
