package delivery

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS delivers to NATS_SUBJECT inboxes with a JetStream publish: success is the
// inbox stream's PubAck.
type NATS struct {
	js jetstream.JetStream
}

// NewNATS returns a Deliverer publishing with js. Share one js (one connection)
// across all deliveries: concurrent Deliver calls pipeline on it.
func NewNATS(js jetstream.JetStream) *NATS {
	return &NATS{js: js}
}

// Deliver publishes d's payload to d.DestName with the attribute headers and waits
// for the PubAck, bounded by ctx (without a ctx deadline the JetStream context's
// default timeout applies).
//
// It uses the synchronous PublishMsg rather than PublishMsgAsync. Both pipeline
// when many goroutines publish on one connection: PublishMsg is a request over the
// connection's shared reply subscription, so N concurrent calls are N messages in
// flight, not N round trips in a row. PublishMsgAsync adds nothing here (every
// caller waits for its own ack anyway) and costs: a pending-ack window shared by
// the whole process (ErrTooManyStalledMsgs once it is full) and, when ctx ends
// first, a future left registered until its ack or a reconnect. PublishMsg cleans
// its reply up when ctx ends. Measured here with 16 goroutines on one connection
// (BenchmarkNATSDeliverParallel against the same loop over PublishMsgAsync), the
// two were within run-to-run noise of each other.
//
// A duplicate PubAck (the messageId was stored within the duplicate window,
// deduplicated via Nats-Msg-Id) is success: the inbox has the message.
func (n *NATS) Deliver(ctx context.Context, d *Delivery) error {
	msg := &nats.Msg{Subject: d.DestName, Header: NATSHeader(d), Data: d.Payload}
	_, err := n.js.PublishMsg(ctx, msg)
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
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return Retryable(fmt.Errorf("error publishing to %s: timed out waiting for the PubAck (is the inbox stream electing a leader?): %w", d.DestName, err))
	default:
		return Retryable(fmt.Errorf("error publishing to %s: %w", d.DestName, err))
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
