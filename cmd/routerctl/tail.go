package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
)

// tailMsg is one message as tail prints it with --json.
type tailMsg struct {
	Subject     string              `json:"subject"`
	Stream      string              `json:"stream,omitempty"`
	Sequence    uint64              `json:"sequence,omitempty"`
	Time        *time.Time          `json:"time,omitempty"`
	Headers     map[string][]string `json:"headers,omitempty"`
	Payload     json.RawMessage     `json:"payload,omitempty"`
	PayloadText string              `json:"payloadText,omitempty"` // when the body is not JSON
}

func cmdTail(a *app, fs *pflag.FlagSet) runFunc {
	count := fs.Int("count", 0, "exit after this many messages (0 = run until interrupted)")
	fromStart := fs.Bool("from-start", false, "with a stream: start from its first stored message instead of new ones")
	return func(ctx context.Context, args []string) error {
		if *count < 0 {
			return usagef("--count must not be negative")
		}
		subject := args[0]
		nc, err := nats.Connect(a.g.natsURL, nats.Name("routerctl-tail"), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("error connecting to NATS at %s: %w", a.g.natsURL, err)
		}
		defer nc.Close()

		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var mu sync.Mutex
		seen := 0
		print := func(m tailMsg) {
			mu.Lock()
			defer mu.Unlock()
			if *count > 0 && seen >= *count {
				return
			}
			seen++
			a.printTailMsg(m)
			if *count > 0 && seen >= *count {
				cancel()
			}
		}

		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("error opening JetStream: %w", err)
		}
		lookup, lcancel := context.WithTimeout(ctx, a.g.timeout)
		streamName, err := js.StreamNameBySubject(lookup, subject)
		lcancel()
		switch {
		case err == nil:
			policy := jetstream.DeliverNewPolicy
			if *fromStart {
				policy = jetstream.DeliverAllPolicy
			}
			cons, err := js.OrderedConsumer(ctx, streamName, jetstream.OrderedConsumerConfig{
				FilterSubjects: []string{subject}, DeliverPolicy: policy,
			})
			if err != nil {
				return fmt.Errorf("error consuming stream %s: %w", streamName, err)
			}
			cc, err := cons.Consume(func(m jetstream.Msg) {
				tm := tailMsg{Subject: m.Subject(), Stream: streamName, Headers: m.Headers()}
				if meta, err := m.Metadata(); err == nil {
					tm.Sequence, tm.Time = meta.Sequence.Stream, &meta.Timestamp
				}
				setPayload(&tm, m.Data())
				print(tm)
			})
			if err != nil {
				return fmt.Errorf("error consuming stream %s: %w", streamName, err)
			}
			defer func() { cc.Stop(); <-cc.Closed() }()
			if !a.g.json {
				fmt.Fprintf(a.stderr, "tailing %s on stream %s (Ctrl-C to stop)\n", subject, streamName)
			}
		case errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
			errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) || errors.Is(err, nats.ErrNoResponders):
			if *fromStart {
				return fmt.Errorf("no stream captures %s: --from-start needs one", subject)
			}
			sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
				tm := tailMsg{Subject: m.Subject, Headers: m.Header}
				setPayload(&tm, m.Data)
				print(tm)
			})
			if err != nil {
				return fmt.Errorf("error subscribing to %s: %w", subject, err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := nc.Flush(); err != nil {
				return fmt.Errorf("error subscribing to %s: %w", subject, err)
			}
			if !a.g.json {
				fmt.Fprintf(a.stderr, "tailing %s (no stream captures it: live messages only; Ctrl-C to stop)\n", subject)
			}
		default:
			return fmt.Errorf("error looking up the stream of %s: %w", subject, err)
		}
		<-ctx.Done()
		return nil
	}
}

func setPayload(tm *tailMsg, data []byte) {
	if json.Valid(data) && len(data) > 0 {
		tm.Payload = slices.Clone(data)
	} else {
		tm.PayloadText = string(data)
	}
}

func (a *app) printTailMsg(m tailMsg) {
	if a.g.json {
		b, _ := json.Marshal(m)
		fmt.Fprintln(a.stdout, string(b))
		return
	}
	head := "--- " + m.Subject
	if m.Stream != "" {
		head += fmt.Sprintf("  (%s #%d", m.Stream, m.Sequence)
		if m.Time != nil {
			head += " " + fmtTime(m.Time)
		}
		head += ")"
	}
	fmt.Fprintln(a.stdout, head)
	keys := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range m.Headers[k] {
			fmt.Fprintf(a.stdout, "%s: %s\n", k, v)
		}
	}
	if m.Payload != nil {
		fmt.Fprintln(a.stdout, string(m.Payload))
	} else {
		fmt.Fprintln(a.stdout, m.PayloadText)
	}
}
