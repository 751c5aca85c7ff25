package pprof_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/msgrouter/msgrouter/internal/pprof"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartServesAndStops(t *testing.T) {
	t.Parallel()
	// Reserve a free port, then hand it to Start.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	stop, err := pprof.Start(addr, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/debug/pprof/cmdline")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	_, err = pprof.Start(addr, slog.New(slog.DiscardHandler))
	require.Error(t, err, "a taken port is reported at once")

	stop()
	_, err = c.Get("http://" + addr + "/debug/pprof/")
	require.Error(t, err, "nothing listens after stop")
}

func TestEmptyAddrStartsNothing(t *testing.T) {
	t.Parallel()
	stop, err := pprof.Start("", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	stop()
}
