// Package stream owns the JetStream topology both ingest and router rely on: the
// ROUTER_MESSAGES stream and the router's durable consumer, and how to connect.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
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

// Settings are the operator's choices for a ROUTER_MESSAGES stream this binary
// creates (DESIGN §7: STREAM_REPLICAS, STREAM_MAX_AGE, STREAM_MAX_BYTES).
type Settings struct {
	Replicas int           // number of copies, 1..5; 3 on a NATS cluster (FIELD-NOTES: R3 in production)
	MaxAge   time.Duration // messages older than this are removed; 0 = no age limit
	MaxBytes int64         // the stream's size limit in bytes, oldest removed first; -1 = unlimited
}

// DefaultSettings are DESIGN §7's defaults: R1, 168h, unlimited bytes.
func DefaultSettings() Settings {
	return Settings{Replicas: 1, MaxAge: 168 * time.Hour, MaxBytes: -1}
}

// SettingsFrom converts the STREAM_* configuration; the zero Stream (a
// configuration not read from the environment, as in tests) means DefaultSettings.
func SettingsFrom(c config.Stream) Settings {
	if c == (config.Stream{}) {
		return DefaultSettings()
	}
	return Settings{Replicas: c.Replicas, MaxAge: c.MaxAge, MaxBytes: c.MaxBytes}
}

// Config is the stream with DefaultSettings; see ConfigFor.
func Config() jetstream.StreamConfig { return ConfigFor(DefaultSettings()) }

// ConfigFor is the stream a binary creates with s: Limits retention with a max age,
// not WorkQueue, because WorkQueue retention has had server bugs (acked messages not
// removed, messages dropped without an interested consumer; FIELD-NOTES), and the
// age limit keeps a replay buffer. Acked messages are removed by age, not by ack.
func ConfigFor(s Settings) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       Name,
		Subjects:   []string{Subject, SubjectAll},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   max(1, s.Replicas),
		MaxAge:     s.MaxAge,
		MaxBytes:   s.MaxBytes,
		Duplicates: DuplicateWind,
		Discard:    jetstream.DiscardOld,
	}
}

// Ensure is EnsureWith(DefaultSettings()) without a logger for the warnings.
func Ensure(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	return EnsureWith(ctx, js, DefaultSettings(), nil)
}

// EnsureWith makes sure ROUTER_MESSAGES exists and captures the contract subjects
// (DESIGN §3, §7):
//
//   - when it does not exist, it is created with ConfigFor(s);
//   - when it exists, its replicas, limits, storage and retention are never changed
//     (an operator may have made it R3 or given it other limits): a missing contract
//     subject is added, nothing else, and log (when not nil) gets one warning naming
//     each setting that differs from s.
//
// Several binaries starting at once are safe: losing the creation race falls back to
// the "exists" path. Errors name the stream; a stream without a leader answers with
// a JetStream error or a timeout bounded by ctx.
func EnsureWith(ctx context.Context, js jetstream.JetStream, s Settings, log *slog.Logger) (jetstream.Stream, error) {
	want := ConfigFor(s)
	for attempt := 0; ; attempt++ {
		st, err := js.Stream(ctx, Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt < 3 {
				continue // another binary created it first: keep theirs
			}
			if err != nil {
				return nil, fmt.Errorf("error creating stream %s: %w", Name, err)
			}
			return st, nil
		}
		if err != nil {
			return nil, fmt.Errorf("error reading stream %s: %w", Name, err)
		}
		have := st.CachedInfo().Config
		if missing := missingSubjects(have.Subjects, want.Subjects); len(missing) > 0 {
			upd := have
			upd.Subjects = append(append([]string(nil), have.Subjects...), missing...)
			st, err = js.UpdateStream(ctx, upd)
			if err != nil {
				return nil, fmt.Errorf("error adding subjects %s to stream %s: %w", strings.Join(missing, ", "), Name, err)
			}
			if log != nil {
				log.Info("added the contract subjects to the existing stream", "stream", Name, "subjects", missing)
			}
		}
		if d := Differences(have, want); len(d) > 0 && log != nil {
			log.Warn("stream "+Name+" exists with settings that differ from this binary's; keeping the stream's (DESIGN §7)",
				"stream", Name, "differs", d)
		}
		return st, nil
	}
}

// Differences names each setting of have (an existing stream) that differs from want,
// as "SETTING: stream has X, configured Y".
func Differences(have, want jetstream.StreamConfig) []string {
	var d []string
	add := func(name string, h, w any) {
		if h != w {
			d = append(d, fmt.Sprintf("%s: stream has %v, configured %v", name, h, w))
		}
	}
	add("STREAM_REPLICAS", max(1, have.Replicas), want.Replicas)
	add("STREAM_MAX_AGE", have.MaxAge, want.MaxAge)
	add("STREAM_MAX_BYTES", have.MaxBytes, want.MaxBytes)
	add("storage", have.Storage, want.Storage)
	add("retention", have.Retention, want.Retention)
	return d
}

// missingSubjects lists the subjects of want that no subject of have covers.
func missingSubjects(have, want []string) []string {
	var missing []string
	for _, w := range want {
		covered := false
		for _, h := range have {
			if subjectCovers(h, w) {
				covered = true
				break
			}
		}
		if !covered {
			missing = append(missing, w)
		}
	}
	return missing
}

// subjectCovers reports whether every subject matching sub also matches filter
// (NATS subject tokens: "*" one token, ">" one or more trailing tokens).
func subjectCovers(filter, sub string) bool {
	f, s := strings.Split(filter, "."), strings.Split(sub, ".")
	for i, ft := range f {
		if ft == ">" {
			return len(s) > i
		}
		if i >= len(s) {
			return false
		}
		switch {
		case s[i] == ">":
			return false
		case ft == "*" || ft == s[i]:
		default:
			return false
		}
	}
	return len(f) == len(s)
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

// ReadyTimeout bounds one readiness look-up of the stream.
const ReadyTimeout = 2 * time.Second

// Readiness answers "can a message be stored in ROUTER_MESSAGES now?" for
// /health/ready (issue 9: ready must not say 200 while every publish gets 503). It
// fails when the NATS connection is down, when JetStream does not answer, when the
// stream does not exist, and when the stream has no leader (a cluster that lost
// quorum, an election in progress). A result is cached for TTL so frequent probes
// cost one stream-info request per TTL, not one each; a lost connection is seen at
// once (it costs nothing to check).
type Readiness struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	ttl time.Duration

	mu  sync.Mutex
	at  time.Time
	err error
}

// NewReadiness checks the stream through nc and js, caching each answer for ttl.
func NewReadiness(nc *nats.Conn, js jetstream.JetStream, ttl time.Duration) *Readiness {
	return &Readiness{nc: nc, js: js, ttl: ttl}
}

// Check returns nil when the stream can store a message, else an error that says
// which part fails. Concurrent callers share one look-up.
func (r *Readiness) Check(ctx context.Context) error {
	if !r.nc.IsConnected() {
		return errors.New("not connected to NATS")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && time.Since(r.at) < r.ttl {
		return r.err
	}
	r.err = StreamReady(ctx, r.js)
	r.at = time.Now()
	return r.err
}

// StreamReady looks ROUTER_MESSAGES up (bounded by ReadyTimeout) and returns nil
// when it exists and has a leader, so a publish can be stored.
func StreamReady(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	st, err := js.Stream(ctx, Name)
	switch {
	case err == nil:
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("stream %s does not exist", Name)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("JetStream is not enabled: %w", err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("stream %s did not answer within %s (no leader, or JetStream unavailable): %w", Name, ReadyTimeout, err)
	default:
		return fmt.Errorf("stream %s cannot be read: %w", Name, err)
	}
	if c := st.CachedInfo().Cluster; c != nil && c.Leader == "" {
		return fmt.Errorf("stream %s has no leader", Name)
	}
	return nil
}

// Ready checks once, without caching, that the stream can store a message; see
// Readiness.
func Ready(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error {
	return NewReadiness(nc, js, 0).Check(ctx)
}
