package main

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/testutil/cmdtest"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

var binary = cmdtest.Binary{Name: "ingest"}

func TestMain(m *testing.M) { binary.Main(m) }

func TestSIGTERMExitsZero(t *testing.T) {
	t.Parallel()
	bin := binary.Path(t)
	srv := natstest.Start(t)
	addr := cmdtest.FreeAddr(t)

	var stderr bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "NATS_URL="+srv.URL, "INGEST_ADDR="+addr, "LOG_FORMAT=text", "SHUTDOWN_TIMEOUT=5s",
		"OTEL_TRACES_EXPORTER=none")
	cmd.Stderr = &stderr
	p := cmdtest.Start(t, cmd)
	p.WaitReady(t, "http://"+addr+"/health/ready", 20*time.Second)

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post("http://"+addr+"/v1/messages", "application/json",
		strings.NewReader(`{"aiAgentAddress":"a@example.com","payload":{}}`))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	require.NoError(t, p.Terminate(t, 20*time.Second), "exit status 0 after SIGTERM; stderr:\n%s", stderr.String())
	require.Contains(t, stderr.String(), "starting msgrouter ingest")
	require.Contains(t, stderr.String(), "stopped")
}

func TestExitStatus(t *testing.T) {
	t.Parallel()
	bin := binary.Path(t)
	for _, tc := range []struct {
		name string
		env  []string
		code int
		line string
	}{
		{"invalid setting", []string{"MAX_MESSAGE_BYTES=abc"}, 2, `ingest: MAX_MESSAGE_BYTES: "abc" is not a whole number`},
		{"NATS unreachable", []string{"NATS_URL=nats://" + cmdtest.FreeAddr(t), "INGEST_ADDR=" + cmdtest.FreeAddr(t)}, 1, "ingest: error connecting to NATS at nats://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			cmd := exec.Command(bin)
			cmd.Env = append(os.Environ(), tc.env...)
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "exits non-zero: %v", err)
			require.Equal(t, tc.code, exit.ExitCode())
			require.Contains(t, stderr.String(), tc.line)
		})
	}
}
