package router_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/router"
)

// A backlog for one agent, about three times what its lane holds, drains through
// backpressure (issue 11): the takeover's handoff waits for room in the agent's
// lane, so no message is written back to the outbox because a queue in memory was
// full (no lane_full or lane_congested wait), the sweep claims nothing, and each
// message reaches the inbox once. The inbox is slow (one delivery at a time, 1 ms
// each) so intake is sure to outrun it; LaneWait is long so the lane, slow by
// design here, is not called congested on a loaded machine.
func TestOneAgentBacklogDrainsWithoutWriteBacks(t *testing.T) {
	t.Parallel()
	const n = 3000
	var mu sync.Mutex
	got := map[string]int{}
	inbox := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond) // a slow agent: the lane, not the intake, sets the pace
		mu.Lock()
		got[r.Header.Get("X-Message-Id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(inbox.Close)
	// DELIVERY_TIMEOUT 30s makes the lease 90s: the backlog's last jobs wait in the
	// lane and in Handoff for n / (the inbox's rate) — seconds, more under -race on a
	// loaded machine — and must stay well inside it (a job past 3/4 of its lease is
	// dropped and its row claimed again after the lease, which this test would
	// count as a sweep claim).
	e := setup(t, map[string]string{"DELIVERY_DESTINATION_CONCURRENCY": "1", "DELIVERY_TIMEOUT": "30s"},
		router.Options{LaneWait: 5 * time.Minute})
	e.cams.set("busy", mapping.TypeHTTPEndpoint, inbox.URL, mapping.StatusActive)

	// The backlog builds up while no router runs (a restart, a burst).
	e.stop()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
		e.publish(body("busy", fmt.Sprintf(`{"n":%d}`, i)), ids[i])
	}
	e.start()

	require.Eventually(t, func() bool { return gathered(t, e.reg, "msgrouter_deliveries_total") == n },
		2*time.Minute, 50*time.Millisecond)
	mu.Lock()
	require.Len(t, got, n)
	for _, id := range ids {
		require.Equal(t, 1, got[id], "message %s delivered once", id)
	}
	mu.Unlock()
	require.Zero(t, gathered(t, e.reg, "msgrouter_outbox_waits_total"), "nothing written back to the outbox")
	require.Zero(t, gathered(t, e.reg, "msgrouter_outbox_claimed_total"), "nothing came back through the sweep")
	require.Zero(t, gathered(t, e.reg, "msgrouter_outbox_lane_congestions_total"))
	require.Greater(t, histogramCount(t, e.reg, "msgrouter_outbox_lane_wait_seconds"), uint64(0), "intake waited for the lane")
	require.EqualValues(t, n, gathered(t, e.reg, "msgrouter_delivery_attempts_total"), "one attempt each")
}

// histogramCount sums the observations of the histogram name in reg.
func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var total uint64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return total
}
