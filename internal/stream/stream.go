// Package stream owns the JetStream topology both ingest and router rely on: the
// ROUTER_MESSAGES stream and the router's durable consumer, and how to connect.
package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msgrouter/msgrouter/internal/config"
)

// Names of the contract (DESIGN §3).
const (
	Name          = "ROUTER_MESSAGES"
	Subject       = "router.messages"
	SubjectAll    = "router.messages.>"
	ConsumerName  = "router"
	DuplicateWind = 2 * time.Minute
)

// Config is the stream: Limits retention with a max age, not WorkQueue, because
// WorkQueue retention has had server bugs (acked messages not removed, messages
// dropped without an interested consumer; FIELD-NOTES), and the age limit keeps a
// replay buffer. Acked messages are removed by age, not by ack.
func Config() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       Name,
		Subjects:   []string{Subject, SubjectAll},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		MaxAge:     24 * time.Hour,
		Duplicates: DuplicateWind,
		Discard:    jetstream.DiscardOld,
	}
}

// Ensure creates the stream or updates it to Config.
func Ensure(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, Config())
	if err != nil {
		return nil, fmt.Errorf("error creating stream %s: %w", Name, err)
	}
	return s, nil
}

// Connect dials NATS with the configured credentials and TLS, reconnecting forever.
func Connect(c config.NATS, name string, opts ...nats.Option) (*nats.Conn, error) {
	o := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
	}
	if c.CredsFile != "" {
		o = append(o, nats.UserCredentials(c.CredsFile))
	}
	if c.NKeyFile != "" {
		nk, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY_FILE: %w", err)
		}
		o = append(o, nk)
	}
	if c.TLSCA != "" {
		o = append(o, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		o = append(o, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	nc, err := nats.Connect(c.URL, append(o, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("error connecting to NATS at %s: %w", config.Mask(c.URL), err)
	}
	return nc, nil
}

// Ready checks that JetStream answers.
func Ready(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error {
	if !nc.IsConnected() {
		return errors.New("not connected to NATS")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("JetStream does not answer: %w", err)
	}
	return nil
}
