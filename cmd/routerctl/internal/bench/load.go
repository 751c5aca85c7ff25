package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msgrouter/msgrouter/internal/apiclient"
)

// load sends until Count or the deadline, then waits for every answer (202s and
// PubAcks), so counts are final when it returns.
func (r *run) load(ctx context.Context) {
	var end time.Time
	if r.cfg.Count == 0 {
		end = r.measureStart.Add(r.cfg.Duration)
	}
	// Closed loop hands a message over only when a sender is free; open loop queues
	// behind busy senders, and the queueing shows up as latency, as it should.
	buf := 0
	if r.cfg.Rate > 0 {
		buf = 8192
	}
	jobs := make(chan job, buf)
	var wg sync.WaitGroup
	if r.cfg.Mode == ModeNATS {
		r.sem = make(chan struct{}, r.cfg.Clients)
		wg.Go(func() { r.natsSender(ctx, jobs) })
	} else {
		for range r.cfg.Clients {
			if r.cfg.Batch > 1 {
				wg.Go(func() { r.httpBatchSender(ctx, jobs) })
			} else {
				wg.Go(func() { r.httpSender(ctx, jobs) })
			}
		}
	}
	if r.cfg.Rate > 0 {
		r.generateOpen(ctx, jobs, end)
	} else {
		r.generateClosed(ctx, jobs, end)
	}
	close(jobs)
	wg.Wait()
	if r.cfg.Mode == ModeNATS {
		select {
		case <-r.js.PublishAsyncComplete():
		case <-time.After(15 * time.Second):
		case <-ctx.Done():
		}
	}
	r.loadEnd = time.Now()
}

func (r *run) enough(sentSoFar int64, now time.Time, end time.Time) bool {
	if r.cfg.Count > 0 {
		return sentSoFar >= int64(r.cfg.Count)
	}
	return !now.Before(end)
}

func (r *run) generateClosed(ctx context.Context, jobs chan<- job, end time.Time) {
	for {
		if r.enough(r.table.n.Load(), time.Now(), end) {
			return
		}
		seq, e := r.table.next()
		select {
		case jobs <- job{seq: seq, e: e}:
		case <-ctx.Done():
			return
		}
	}
}

// generateOpen emits message i at loadStart + i/Rate, whatever happened to the ones
// before: the schedule never waits for the system under test.
func (r *run) generateOpen(ctx context.Context, jobs chan<- job, end time.Time) {
	interval := float64(time.Second) / r.cfg.Rate
	t0 := r.loadStart.UnixNano()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := int64(0); ; i++ {
		due := t0 + int64(float64(i)*interval)
		if r.enough(i, time.Unix(0, due), end) {
			return
		}
		if wait := due - time.Now().UnixNano(); wait > 0 {
			timer.Reset(time.Duration(wait))
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		seq, e := r.table.next()
		select {
		case jobs <- job{seq: seq, e: e, intended: due}:
		case <-ctx.Done():
			return
		}
	}
}

func (r *run) stamp(j job) int64 {
	intended := j.intended
	if intended == 0 {
		intended = time.Now().UnixNano()
	}
	j.e.intended.Store(intended)
	r.sent.Add(1)
	return intended
}

func (r *run) envelopeSize() int { return 200 + len(r.pad) }

func (r *run) httpSender(ctx context.Context, jobs <-chan job) {
	for j := range jobs {
		if ctx.Err() != nil {
			continue // interrupted: drop the rest unsent
		}
		intended := r.stamp(j)
		// A fresh body each time: the transport may still hold the previous one
		// when a server answers before reading it all.
		body := r.appendEnvelope(make([]byte, 0, r.envelopeSize()), j.seq, intended)
		_, err := r.cfg.Client.SendRaw(ctx, body)
		if err == nil {
			r.markAccepted(j.e, time.Now().UnixNano())
			continue
		}
		if ctx.Err() != nil {
			continue // cancellation is not a failure of the system under test
		}
		r.countError(httpErrorKind(err))
	}
}

// natsSender publishes with JetStream async publish, at most Clients unacknowledged;
// onPubAck and onPubErr release the slots.
func (r *run) natsSender(ctx context.Context, jobs <-chan job) {
	for j := range jobs {
		if ctx.Err() != nil {
			continue
		}
		select {
		case r.sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		intended := r.stamp(j)
		data := r.appendEnvelope(make([]byte, 0, r.envelopeSize()), j.seq, intended)
		if _, err := r.js.PublishMsgAsync(&nats.Msg{Subject: IngestSubject, Data: data}); err != nil {
			<-r.sem
			r.countError(natsErrorKind(err))
		}
	}
}

func (r *run) onPubAck(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
	now := time.Now().UnixNano()
	if seq, ok := parseSeq(m.Data); ok {
		if e := r.table.get(seq); e != nil {
			r.markAccepted(e, now)
		}
	}
	<-r.sem
}

func (r *run) onPubErr(_ jetstream.JetStream, _ *nats.Msg, err error) {
	r.countError(natsErrorKind(err))
	<-r.sem
}

// httpErrorKind names a failed submission with a bounded set of keys.
func httpErrorKind(err error) string {
	var apiErr *apiclient.Error
	if errors.As(err, &apiErr) {
		return fmt.Sprintf("http_%d_%s", apiErr.Status, apiErr.Code)
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout() {
		return "timeout"
	}
	return "connection"
}

func natsErrorKind(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return "nats_no_stream"
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, nats.ErrTimeout):
		return "nats_timeout"
	case errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionClosed):
		return "nats_disconnected"
	case errors.As(err, &apiErr):
		return fmt.Sprintf("nats_api_%d", apiErr.ErrorCode)
	}
	return "nats_error"
}

// missingNow counts accepted messages not delivered yet.
func (r *run) missingNow() int64 {
	var n int64
	r.table.each(func(_ int64, e *entry) {
		if e.accepted.Load() != 0 && e.delivered.Load() == 0 {
			n++
		}
	})
	return n
}

// drain waits until every accepted message has arrived, or DrainTimeout.
func (r *run) drain(ctx context.Context) {
	deadline := time.Now().Add(r.cfg.DrainTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// Scan only when the counters say it may be over: deliveries of messages
		// whose submission failed can make delivered exceed accepted.
		if r.delivered.Load() >= r.accepted.Load() || r.failed.Load() > 0 {
			if r.missingNow() == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

func (r *run) progress(stop <-chan struct{}) {
	w := r.cfg.Progress
	if w == nil {
		<-stop
		return
	}
	t := time.NewTicker(r.cfg.ProgressEvery)
	defer t.Stop()
	last := time.Now()
	var lastAcc, lastDel int64
	hinted := false
	for {
		var now time.Time
		select {
		case <-stop:
			return
		case now = <-t.C:
		}
		acc, del := r.accepted.Load(), r.delivered.Load()
		dt := now.Sub(last).Seconds()
		fmt.Fprintf(w, "bench %s %4.0fs  sent %d  accepted %.0f/s  delivered %.0f/s  in flight %d  errors %d\n",
			r.cfg.RunID, now.Sub(r.loadStart).Seconds(), r.sent.Load(),
			float64(acc-lastAcc)/dt, float64(del-lastDel)/dt, max(acc-del, 0), r.failed.Load())
		last, lastAcc, lastDel = now, acc, del
		first := r.firstAccept.Load()
		if !hinted && del == 0 && first != 0 && time.Since(time.Unix(0, first)) > r.cfg.NoDeliveryHint {
			hinted = true
			for _, h := range r.noDeliveryHints() {
				fmt.Fprintln(w, "hint:", h)
			}
		}
	}
}

func (r *run) noDeliveryHints() []string {
	var hs []string
	if r.cfg.Inbox != InboxNATS {
		hs = append(hs, "no delivery has reached the HTTP receiver at "+r.httpURL+
			": the router refuses loopback and private inboxes unless it runs with DELIVERY_ALLOW_PRIVATE_NETWORKS=true,"+
			" and it must be able to reach that address (set --http-advertise when the router runs elsewhere, e.g. in a container)")
	}
	if r.cfg.Inbox != InboxHTTP {
		hs = append(hs, "no delivery has reached the NATS inboxes bench."+r.cfg.RunID+
			".inbox.*: is a router running, on the same NATS server as --nats-url and the same CAMS as --cams-url?")
	}
	return hs
}

func (r *run) hints(res *Result) []string {
	var hs []string
	switch {
	case res.Sent > 0 && res.Accepted == 0:
		where := "--ingest-url"
		if r.cfg.Mode == ModeNATS {
			where = "--nats-url (is the ROUTER_MESSAGES stream there?)"
		}
		hs = append(hs, "nothing was accepted: check "+where+" and --api-key; errors: "+strings.Join(res.errorList(), ", "))
	case res.Accepted > 0 && res.Delivered == 0:
		hs = append(hs, r.noDeliveryHints()...)
	case res.Missing > 0:
		hs = append(hs, fmt.Sprintf("%d accepted messages had not arrived after the drain timeout (%s): the router may be behind (try a longer --drain-timeout) or messages were rejected or dead-lettered (routerctl dead-letters)",
			res.Missing, r.cfg.DrainTimeout))
	}
	return hs
}
