package service_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/service"
)

func TestPprofServesAndStops(t *testing.T) {
	t.Parallel()
	// Reserve a free port, then hand it to Pprof.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	pp, err := service.Pprof(addr, log)
	require.NoError(t, err)
	require.NoError(t, pp.Start(t.Context()))
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/debug/pprof/cmdline")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	_, err = service.Pprof(addr, log)
	require.ErrorContains(t, err, "PPROF_ADDR", "a taken port is reported at once, naming the variable")

	require.NoError(t, pp.Stop(context.Background()))
	_, err = c.Get("http://" + addr + "/debug/pprof/")
	require.Error(t, err, "nothing listens after Stop")
}

func TestPprofEmptyAddrIsOff(t *testing.T) {
	t.Parallel()
	pp, err := service.Pprof("", log)
	require.NoError(t, err)
	require.Nil(t, pp)
	// A nil part is skipped by a Group.
	g := service.NewGroup(log)
	require.NoError(t, g.Start(t.Context(), 0, service.Part{Name: "pprof", Service: pp}))
	require.Empty(t, g.Stop(t.Context()))
}
