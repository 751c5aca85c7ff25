package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/apiclient"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/message"
)

// The suite itself runs real processes (cmd/chaos, make chaos); these tests cover
// the fakes and the bookkeeping it judges with.

func post(t *testing.T, url, id string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"a":1}`))
	require.NoError(t, err)
	req.Header.Set("X-Message-Id", id)
	// No pooled connections: each request shows what a new dial meets.
	client := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

func TestInboxModes(t *testing.T) {
	t.Parallel()
	in, err := newHTTPInbox()
	require.NoError(t, err)
	t.Cleanup(in.sw.down)

	resp, err := post(t, in.url(), "m1")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	require.NoError(t, in.setMode(InboxDown))
	_, err = post(t, in.url(), "m2")
	require.ErrorIs(t, err, syscall.ECONNREFUSED, "a down inbox refuses connections")

	require.NoError(t, in.setMode(InboxHang))
	_, err = post(t, in.url(), "m3")
	require.Error(t, err, "a hanging inbox never answers")
	var ne interface{ Timeout() bool }
	require.True(t, errors.As(err, &ne) && ne.Timeout())
	require.Eventually(t, func() bool { return in.abandoned.Load() == 1 }, 5*time.Second, 10*time.Millisecond,
		"the inbox sees the client give up")

	require.NoError(t, in.setMode(InboxErrors))
	statuses := map[int]int{}
	for range 200 {
		resp, err := post(t, in.url(), "m4")
		require.NoError(t, err)
		statuses[resp.StatusCode]++
	}
	require.Positive(t, statuses[http.StatusInternalServerError])
	require.Positive(t, statuses[http.StatusTooManyRequests])
	require.Positive(t, statuses[http.StatusOK])

	require.NoError(t, in.setMode(InboxOK))
	resp, err = post(t, in.url(), "m1")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	n, body := in.arrivals.get("m1")
	require.Equal(t, 2, n, "every 200 is an arrival")
	require.JSONEq(t, `{"a":1}`, string(body))
	n, _ = in.arrivals.get("m2")
	require.Zero(t, n)
	n, _ = in.arrivals.get("m3")
	require.Zero(t, n, "a request the client gave up on is not an arrival")
	n, _ = in.arrivals.get("m4")
	require.Equal(t, statuses[http.StatusOK], n)
}

func TestHangEndsWhenRestored(t *testing.T) {
	t.Parallel()
	in, err := newHTTPInbox()
	require.NoError(t, err)
	t.Cleanup(in.sw.down)
	require.NoError(t, in.setMode(InboxHang))
	answered := make(chan int, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Post(in.url(), "application/json", strings.NewReader(`{}`))
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	require.Eventually(t, func() bool { return in.requests.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, in.setMode(InboxOK))
	select {
	case status := <-answered:
		require.Equal(t, http.StatusOK, status)
	case <-time.After(5 * time.Second):
		t.Fatal("the hanging request was not answered after the inbox was restored")
	}
}

// startFakeCAMS starts a fake CAMS, stopped when t ends, and returns it with a
// client of its API.
func startFakeCAMS(t *testing.T) (*fakeCAMS, *apiclient.Client) {
	t.Helper()
	c, err := newFakeCAMS()
	require.NoError(t, err)
	t.Cleanup(c.sw.down)
	client := apiclient.New(time.Second, 2)
	client.CAMSURL = c.url()
	return c, client
}

func TestFakeCAMS(t *testing.T) {
	t.Parallel()
	c, client := startFakeCAMS(t)
	c.register("a@x", mapping.TypeNATSSubject, "agents.a")
	ctx := context.Background()

	m, err := client.GetAgent(ctx, "a@x")
	require.NoError(t, err)
	require.Equal(t, "agents.a", m.InboxName)
	require.Equal(t, mapping.StatusActive, m.Status)
	_, err = client.GetAgent(ctx, "ghost@x")
	require.True(t, apiclient.IsNotFound(err), "%v", err)

	require.NoError(t, c.setMode(CAMSUnavailable))
	_, err = client.GetAgent(ctx, "a@x")
	requireStatus(t, err, 503)
	require.NoError(t, c.setMode(CAMSRefused))
	_, err = client.GetAgent(ctx, "a@x")
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.NoError(t, c.setMode(CAMSUp))
	_, err = client.GetAgent(ctx, "a@x")
	require.NoError(t, err)
}

func TestBatch(t *testing.T) {
	t.Parallel()
	agents := []*agent{{address: "a", weight: 45}, {address: "b", weight: 35}, {address: "c", weight: 19}, {address: "d", weight: 1}}
	msgs := newBatch("run", "sc", 1000, agents)
	per := map[string]int{}
	ids := map[string]bool{}
	for _, m := range msgs {
		per[m.agent.address]++
		ids[m.wantID] = true
		var env message.Envelope
		require.NoError(t, json.Unmarshal(m.body, &env))
		require.Equal(t, m.wantID, message.SenderID(serviceName, m.spmid).String())
		require.True(t, bytes.Contains(m.body, []byte(`123456789012345678901234567890`)))
	}
	require.Equal(t, map[string]int{"a": 450, "b": 350, "c": 190, "d": 10}, per, "agents get their weight")
	require.Len(t, ids, 1000, "every message has its own id")
	require.NotEqual(t, newBatch("run2", "sc", 1, agents)[0].wantID, msgs[0].wantID, "runs do not share ids")
}

func TestJudge(t *testing.T) {
	t.Parallel()
	ok, ghost := newArrivals(), &agent{address: "ghost", expect: statusRejected}
	good := &agent{address: "good", weight: 1, expect: statusDelivered, arrivals: ok}
	msgs := newBatch("run", "judge", 6, []*agent{good})
	msgs[5].agent = ghost
	end := time.Now()
	set := func(m *tracked, status string, arrivals int, payload []byte) {
		m.accepted(m.wantID)
		m.acceptedAt = end.Add(-time.Second)
		m.status, m.terminalAt = status, end.Add(time.Duration(m.seq)*time.Second)
		for range arrivals {
			ok.record(m.wantID, payload)
		}
	}
	set(msgs[0], statusDelivered, 1, msgs[0].payload)                              // fine
	set(msgs[1], statusDelivered, 3, msgs[1].payload)                              // two duplicates
	set(msgs[2], statusDelivered, 0, nil)                                          // lost: never arrived
	set(msgs[3], statusPending, 0, nil)                                            // lost: not terminal
	set(msgs[4], statusDeadLettered, 0, nil)                                       // unexpected
	set(msgs[5], statusRejected, 0, nil)                                           // the ghost: expected
	msgs[3].terminalAt = time.Time{}                                               // never terminal
	msgs = append(msgs, newBatch("run", "judge-unaccepted", 1, []*agent{good})...) // not accepted: not judged

	var h harness
	res := Result{}
	h.judge(&res, msgs, end)
	res = res.done()
	require.Equal(t, 6, res.Accepted)
	require.Equal(t, 3, res.Delivered)
	require.Equal(t, 1, res.Rejected)
	require.Equal(t, 1, res.DeadLettered)
	require.Equal(t, 2, res.Duplicates)
	require.Equal(t, 2, res.Lost)
	require.Equal(t, 1, res.Unexpected)
	require.Equal(t, -1.0, res.RecoverSeconds, "lost messages: never recovered")
	require.Equal(t, 6.0, res.MaxLatencySeconds, "from the 202 to the last terminal status")
	require.False(t, res.Passed)
	require.Len(t, res.Problems, 3)

	res = Result{}
	msgs[2].status, msgs[3].status = statusRejected, statusRejected // no longer lost
	msgs[3].terminalAt = end.Add(3 * time.Second)
	msgs[4].status = statusRejected
	msgs[4].acceptedAt = end.Add(time.Second) // accepted after the fault: not in recover
	h.judge(&res, msgs[:5], end)
	require.Equal(t, 3.0, res.RecoverSeconds, "until every message accepted before the fault's end is terminal")
}

// Select and SelectCluster: nil selects all, names are trimmed and kept in the
// order given, an unknown name is refused.
func TestSelect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		sel     func([]string) ([]Scenario, error)
		all     []Scenario
		two     []string
		unknown string
		err     string
	}{
		{"local", Select, Scenarios(), []string{"router-kill", " duplicates"}, "nope", "unknown scenario"},
		{"cluster", SelectCluster, ClusterScenarios(), []string{"leader-kill", " node-wipe"}, "router-kill", "unknown cluster scenario"},
	} {
		all, err := tc.sel(nil)
		require.NoError(t, err, tc.name)
		require.Len(t, all, len(tc.all), tc.name)
		some, err := tc.sel(tc.two)
		require.NoError(t, err, tc.name)
		require.Len(t, some, 2, tc.name)
		require.Equal(t, tc.two[0], some[0].Name, tc.name)
		require.Equal(t, strings.TrimSpace(tc.two[1]), some[1].Name, tc.name)
		_, err = tc.sel([]string{tc.unknown})
		require.ErrorContains(t, err, tc.err, tc.name)
	}
	some, err := Select([]string{"duplicates"})
	require.NoError(t, err)
	require.True(t, some[0].Duplicates)
}

// requireStatus checks err is the API's answer with the given HTTP status.
func requireStatus(t *testing.T, err error, status int) {
	t.Helper()
	var apiErr *apiclient.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, status, apiErr.Status, "%v", err)
}
