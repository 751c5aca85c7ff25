package chaos

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Names of the NATS inbox the harness owns.
const (
	inboxStream  = "CHAOS_INBOX"
	inboxSubject = "chaos.inbox.ok"
)

// ensureInboxStream creates the stream that captures the NATS agent's inbox subject,
// so the router's deliveries get a PubAck and the harness can read them back.
func ensureInboxStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:     inboxStream,
		Subjects: []string{"chaos.inbox.>"},
		Storage:  jetstream.FileStorage,
		Replicas: replicas,
		// No dedupe window: the harness wants to see every duplicate the router sends
		// (the router sets Nats-Msg-Id, which a window would silently absorb; 100ms
		// is the server's minimum).
		Duplicates: 100 * time.Millisecond,
	})
	if err != nil {
		return fmt.Errorf("error creating the inbox stream: %w", err)
	}
	return nil
}

// readInbox reads the inbox stream from sequence from up to its current end with an
// ordered consumer and records every message, keyed by its messageId header. It
// returns the next sequence to read from.
//
// A failed read is retried from where it stopped for up to 30 s: right after a NATS
// node restarts, JetStream requests may meet "no responders" for a moment (cluster
// mode), and an unread message must not count as lost.
func readInbox(ctx context.Context, js jetstream.JetStream, from uint64, into *arrivals) (uint64, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		next, err := readInboxOnce(ctx, js, from, into)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return next, err
		}
		from = next
		sleep(ctx, 500*time.Millisecond)
	}
}

func readInboxOnce(ctx context.Context, js jetstream.JetStream, from uint64, into *arrivals) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, inboxStream)
	if err != nil {
		return from, fmt.Errorf("error reading the inbox stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return from, fmt.Errorf("error reading the inbox stream: %w", err)
	}
	last := info.State.LastSeq
	if last < from {
		return from, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
	})
	if err != nil {
		return from, fmt.Errorf("error reading the inbox stream: %w", err)
	}
	next := from
	for next <= last {
		// Asking for no more than is left returns as soon as it is there, instead
		// of waiting out FetchMaxWait for messages that will not come.
		batch, err := cons.Fetch(int(min(500, last-next+1)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return next, fmt.Errorf("error reading the inbox stream: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			into.record(m.Headers().Get("messageId"), m.Data())
			next = meta.Sequence.Stream + 1
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return next, fmt.Errorf("error reading the inbox stream: %w", err)
		}
		if n == 0 && ctx.Err() != nil {
			return next, fmt.Errorf("error reading the inbox stream: %w", ctx.Err())
		}
	}
	return next, nil
}
