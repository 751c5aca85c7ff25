package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS delivers to NATS_SUBJECT inboxes with a JetStream publish: success is the
// inbox stream's PubAck.
type NATS struct {
	js    jetstream.JetStream // look-ups (whyNoResponders)
	async jetstream.JetStream // the publishes: asynchronous, each PubAck awaited
}

const (
	// natsMaxPending bounds the publishes awaiting their PubAck on the connection.
	// The dispatcher already bounds deliveries in flight (per destination), far
	// below it, so it is never what makes a delivery wait; a publish beyond it
	// would wait 200ms for room and then fail (ErrTooManyStalledMsgs, retryable).
	natsMaxPending = 1 << 16
	// natsAckTimeout is how long a publish's PubAck is awaited by nats.go before
	// its pending entry is dropped: it cleans up after a Deliver whose ctx ended
	// first (nobody waits for that ack any more). Longer than any attempt timeout.
	natsAckTimeout = time.Minute
)

// NewNATS returns a Deliverer publishing on js's connection. Share one js (one
// connection) across all deliveries: concurrent Deliver calls pipeline on it.
func NewNATS(js jetstream.JetStream) *NATS {
	n := &NATS{js: js, async: js}
	// A JetStream context of its own for the publishes, so that its pending-ack
	// window and ack timeout are set here whatever js was built with. It fails
	// only without a connection (a test double); js then publishes.
	if nc := js.Conn(); nc != nil {
		if a, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(natsMaxPending),
			jetstream.WithPublishAsyncTimeout(natsAckTimeout)); err == nil {
			n.async = a
		}
	}
	return n
}

// Deliver publishes d's payload to d.DestName with the attribute headers and waits
// for the PubAck, bounded by ctx: it returns nil only once the inbox stream
// confirmed storage. Any other end is an error: a negative or missing PubAck, a
// disconnect while waiting (nats.go fails every pending publish then), ctx ending.
//
// The publish is asynchronous (PublishMsgAsync) and Deliver awaits its future
// (issue 11, lever 6 in BENCHMARKS.md): the same guarantee as a synchronous request
// with less work per message — no per-request reply subscription entry; the acks of
// all deliveries come back on one wildcard subscription. What the synchronous
// request did better is bounded here: the window is natsMaxPending (never the
// limit in practice), and when ctx ends first the pending entry stays only until
// its ack arrives, a reconnect, or natsAckTimeout. Measured: router CPU per message
// 0.85x in a one-agent drain to a NATS inbox, unchanged elsewhere.
//
// A duplicate PubAck (the messageId was stored within the duplicate window,
// deduplicated via Nats-Msg-Id) is success: the inbox has the message.
func (n *NATS) Deliver(ctx context.Context, d *Delivery) error {
	msg := &nats.Msg{Subject: d.DestName, Header: NATSHeader(d), Data: d.Payload}
	err := n.publish(ctx, msg)
	if err == nil {
		return nil
	}
	if ce := ctx.Err(); ce != nil && errors.Is(ce, context.Canceled) {
		// Shutdown or the dispatcher giving up: not a failed attempt.
		return fmt.Errorf("error publishing to %s: %w", d.DestName, errors.Join(ce, err))
	}
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return Retryable(fmt.Errorf("error publishing to %s: %s: %w", d.DestName, n.whyNoResponders(ctx, d.DestName), err))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		return Retryable(fmt.Errorf("error publishing to %s: timed out waiting for the PubAck (is the inbox stream electing a leader?): %w", d.DestName, err))
	default:
		return Retryable(fmt.Errorf("error publishing to %s: %w", d.DestName, err))
	}
}

// publish sends msg and waits for its PubAck or ctx.
func (n *NATS) publish(ctx context.Context, msg *nats.Msg) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := n.async.PublishMsgAsync(msg)
	if err != nil {
		return err
	}
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// whyNoResponders tells apart the two causes of "no responders" on a JetStream
// publish (issue 9: the log said "no stream captures the subject" while the stream
// existed and was electing a leader): it asks JetStream which stream captures
// subject. Bounded by ctx (the attempt's timeout); an unanswered look-up says both
// causes are possible. Both are transient failures: a stream may be created, and an
// election ends within seconds (DESIGN §5).
func (n *NATS) whyNoResponders(ctx context.Context, subject string) string {
	name, err := n.js.StreamNameBySubject(ctx, subject)
	switch {
	case err == nil && name != "":
		return fmt.Sprintf("stream %s captures the subject but did not answer (no leader: an election in progress, or its cluster lost quorum)", name)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return "no stream captures the subject"
	default:
		return "no stream answered (none captures the subject, or its stream has no leader)"
	}
}
