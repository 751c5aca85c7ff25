package chaos

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/msgrouter/msgrouter/internal/apiclient"
)

func terminal(status string) bool {
	return status == statusDelivered || status == statusRejected || status == statusDeadLettered
}

// terminalAt is when the message v reached its status, by the router's account.
func terminalAt(v *apiclient.Message, observed time.Time) time.Time {
	switch {
	case v.DeliveredAt != nil:
		return *v.DeliveredAt
	case v.FinishedAt != nil:
		return *v.FinishedAt
	case len(v.History) > 0 && v.History[len(v.History)-1].At != nil:
		return *v.History[len(v.History)-1].At
	}
	return observed
}

// checker polls the admin API of whichever router replicas are up.
type checker struct {
	routers func() []string // base URLs of the live replicas
	client  *http.Client
	workers int
	next    atomic.Uint64
}

func newChecker(routers func() []string) *checker {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	return &checker{routers: routers, client: &http.Client{Transport: tr, Timeout: 5 * time.Second}, workers: 8}
}

// drain polls every accepted message until all are terminal or the deadline passes;
// it reports whether all are terminal. A terminal status is final (nothing replays
// here), so a message is not asked about again once terminal.
func (c *checker) drain(ctx context.Context, msgs []*tracked, deadline time.Time) bool {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for {
		var open []*tracked
		for _, m := range msgs {
			if m.acceptedID() != "" && !terminal(m.status) {
				open = append(open, m)
			}
		}
		if len(open) == 0 {
			return true
		}
		c.pass(ctx, open)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *checker) pass(ctx context.Context, open []*tracked) {
	inParallel(ctx, c.workers, open, func(m *tracked) {
		v, err := c.get(ctx, m.acceptedID())
		if err != nil || v == nil {
			return // not seen yet, or no replica answered: next pass
		}
		m.status, m.reason, m.lastError, m.attempts = v.Status, v.Reason, v.LastError, v.Attempts
		if v.ReceivedAt != nil {
			m.receivedAt = *v.ReceivedAt
		}
		if terminal(v.Status) {
			m.terminalAt = terminalAt(v, time.Now())
		}
	})
}

// get asks one live replica, moving on to the next on a transport error or 5xx. A
// nil message and nil error is a 404: no replica has taken the message over yet.
func (c *checker) get(ctx context.Context, id string) (*apiclient.Message, error) {
	routers := c.routers()
	if len(routers) == 0 {
		return nil, fmt.Errorf("no router replica is up")
	}
	var lastErr error
	for range len(routers) {
		base := routers[c.next.Add(1)%uint64(len(routers))]
		v, err := (&apiclient.Client{HTTP: c.client, RouterURL: base}).GetMessage(ctx, id)
		if apiclient.IsNotFound(err) {
			return nil, nil
		}
		if err == nil {
			return v, nil
		}
		lastErr = err
	}
	return nil, lastErr
}
