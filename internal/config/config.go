package config

import (
	"encoding/base64"
	"log/slog"
	"strings"
	"time"
)

// Version is stamped at build time (-ldflags "-X .../config.Version=...").
var Version = "dev"

// Common holds what every binary reads.
type Common struct {
	LogLevel        string        // LOG_LEVEL. Defaults to info.
	LogFormat       string        // LOG_FORMAT. Defaults to json.
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT. Defaults to 10s.
	PprofAddr       string        // PPROF_ADDR. Defaults to none.
}

// NATS holds how ingest and router connect to NATS.
type NATS struct {
	URL       string // NATS_URL. Defaults to nats://127.0.0.1:4222.
	CredsFile string // NATS_CREDS_FILE: a .creds file (JWT + nkey seed).
	NKeyFile  string // NATS_NKEY_FILE: an nkey seed file.
	TLSCA     string // NATS_TLS_CA: CA bundle to verify the server.
	TLSCert   string // NATS_TLS_CERT / NATS_TLS_KEY: client certificate.
	TLSKey    string
	Stream    Stream // STREAM_*: how ROUTER_MESSAGES is created (DESIGN §7).
}

// Stream holds the settings ingest and router apply when they create the
// ROUTER_MESSAGES stream (DESIGN §7). They never change an existing stream: an
// operator's replicas, limits and storage win (internal/stream.Ensure).
type Stream struct {
	Replicas int           // STREAM_REPLICAS, 1..5. Defaults to 1 (use 3 on a NATS cluster).
	MaxAge   time.Duration // STREAM_MAX_AGE; 0 = unlimited. Defaults to 168h.
	MaxBytes int64         // STREAM_MAX_BYTES; -1 = unlimited. Defaults to -1.
}

func loadStream(e *Env) Stream {
	s := Stream{
		Replicas: e.Int("STREAM_REPLICAS", 1, 1, 5),
		MaxAge:   e.Duration("STREAM_MAX_AGE", 168*time.Hour, 0, 100*365*24*time.Hour),
		MaxBytes: int64(e.Int("STREAM_MAX_BYTES", -1, -1, 1<<62)),
	}
	if s.MaxBytes == 0 {
		e.fail("STREAM_MAX_BYTES", "0 is not a limit: use -1 for unlimited or a size in bytes")
	}
	return s
}

// Ingest is the configuration of cmd/ingest.
type Ingest struct {
	Common
	NATS
	Addr            string  // INGEST_ADDR. Defaults to :8080.
	MaxMessageBytes int     // MAX_MESSAGE_BYTES. Defaults to 262144.
	MaxBatchBytes   int     // MAX_BATCH_BYTES: body limit of POST /v1/messages/batch (DESIGN §2). Defaults to 4194304.
	APIKeys         string  // INGEST_API_KEYS plus the lines of INGEST_API_KEYS_FILE.
	RateLimit       float64 // INGEST_RATE_LIMIT msgs/s per sender. Defaults to 0 = unlimited.
	RateBurst       int     // INGEST_RATE_BURST. Defaults to 2×limit.
	PublishTimeout  time.Duration
}

// Router is the configuration of cmd/router.
type Router struct {
	Common
	NATS
	DatabaseURL            string        // DATABASE_URL. Defaults to the libpq defaults.
	Addr                   string        // ROUTER_ADDR. Defaults to :8081.
	CAMSURL                string        // CAMS_API_URL. Defaults to http://127.0.0.1:8001.
	CAMSAPIKey             string        // CAMS_API_KEY. Defaults to none.
	CAMSTimeout            time.Duration // CAMS_TIMEOUT. Defaults to 2s.
	CAMSCacheTTL           time.Duration // CAMS_CACHE_TTL. Defaults to 30s.
	AdminAPIKeys           string        // ADMIN_API_KEYS plus the lines of ADMIN_API_KEYS_FILE.
	DeliveryMaxAttempts    int           // DELIVERY_MAX_ATTEMPTS. Defaults to 10.
	DeliveryBackoffInitial time.Duration // DELIVERY_BACKOFF_INITIAL. Defaults to 1s.
	DeliveryBackoffMax     time.Duration // DELIVERY_BACKOFF_MAX. Defaults to 5m.
	DeliveryTimeout        time.Duration // DELIVERY_TIMEOUT. Defaults to 10s.
	AllowPrivateNetworks   bool          // DELIVERY_ALLOW_PRIVATE_NETWORKS. Defaults to false.
	SigningSecrets         []string      // DELIVERY_SIGNING_SECRETS. Defaults to none.
	DestinationConcurrency int           // DELIVERY_DESTINATION_CONCURRENCY. Defaults to 32.
	DestinationRate        float64       // DELIVERY_DESTINATION_RATE msgs/s per destination. Defaults to 0 = unlimited.
	BreakerFailures        int           // BREAKER_FAILURES. Defaults to 5.
	BreakerOpenTimeout     time.Duration // BREAKER_OPEN_TIMEOUT. Defaults to 30s.
	MessageRetention       time.Duration // MESSAGE_RETENTION. Defaults to 168h.
	Audit                  Audit         // AUDIT_*: the scheduled audit (config/audit.go).
	// HoldMaxAge is HOLD_MAX_AGE: how long after acceptance a message held for an
	// INACTIVE agent (inactivePolicy HOLD, DESIGN §5a) may wait before it is
	// DEAD_LETTERED/AGENT_INACTIVE. Defaults to 24h.
	HoldMaxAge time.Duration
}

// CAMS is the configuration of cmd/cams.
type CAMS struct {
	Common
	DatabaseURL  string // DATABASE_URL.
	Addr         string // CAMS_ADDR. Defaults to :8001.
	AdminAPIKeys string // ADMIN_API_KEYS plus the lines of ADMIN_API_KEYS_FILE.
	// SecretsKey (CAMS_SECRETS_KEY) is base64 of 32 bytes: signingSecrets and
	// inboxAuth are encrypted at rest with it. Empty = stored in plain text.
	// SecretsKeyPrevious (CAMS_SECRETS_KEY_PREVIOUS) still decrypts during a key
	// rotation (DESIGN §4, §7).
	SecretsKey         string
	SecretsKeyPrevious string
}

func loadCommon(e *Env) Common {
	c := Common{
		LogLevel:        strings.ToLower(e.String("LOG_LEVEL", "info")),
		LogFormat:       strings.ToLower(e.String("LOG_FORMAT", "json")),
		ShutdownTimeout: e.Duration("SHUTDOWN_TIMEOUT", 10*time.Second, 0, time.Hour),
		PprofAddr:       e.String("PPROF_ADDR", ""),
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		e.fail("LOG_LEVEL", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		e.fail("LOG_FORMAT", "%q is not json or text", c.LogFormat)
	}
	if c.PprofAddr != "" {
		e.Addr("PPROF_ADDR", "")
	}
	return c
}

func loadNATS(e *Env) NATS {
	n := NATS{
		URL:       e.String("NATS_URL", "nats://127.0.0.1:4222"),
		CredsFile: e.String("NATS_CREDS_FILE", ""),
		NKeyFile:  e.String("NATS_NKEY_FILE", ""),
		TLSCA:     e.String("NATS_TLS_CA", ""),
		TLSCert:   e.String("NATS_TLS_CERT", ""),
		TLSKey:    e.String("NATS_TLS_KEY", ""),
		Stream:    loadStream(e),
	}
	for _, u := range strings.Split(n.URL, ",") {
		if !strings.Contains(u, "://") {
			e.fail("NATS_URL", "%q is not a URL like nats://host:4222", Mask(u))
		}
	}
	if (n.TLSCert == "") != (n.TLSKey == "") {
		e.fail("NATS_TLS_CERT", "NATS_TLS_CERT and NATS_TLS_KEY must be set together")
	}
	return n
}

func keys(e *Env, name string) string {
	list := e.String(name, "")
	if file := e.File(name + "_FILE"); file != "" {
		list = strings.Join([]string{list, strings.ReplaceAll(file, "\n", ",")}, ",")
	}
	return list
}

// LoadIngest reads the ingest configuration.
func LoadIngest(e *Env) (Ingest, error) {
	c := Ingest{
		Common:          loadCommon(e),
		NATS:            loadNATS(e),
		Addr:            e.Addr("INGEST_ADDR", ":8080"),
		MaxMessageBytes: e.Int("MAX_MESSAGE_BYTES", 262144, 64, 64<<20),
		MaxBatchBytes:   e.Int("MAX_BATCH_BYTES", 4194304, 64, 256<<20),
		APIKeys:         keys(e, "INGEST_API_KEYS"),
		RateLimit:       e.Float("INGEST_RATE_LIMIT", 0, 0, 1e9),
		PublishTimeout:  e.Duration("INGEST_PUBLISH_TIMEOUT", 5*time.Second, 10*time.Millisecond, 5*time.Minute),
	}
	c.RateBurst = e.Int("INGEST_RATE_BURST", max(1, int(2*c.RateLimit)), 1, 1<<30)
	return c, e.Err()
}

// LoadRouter reads the router configuration.
func LoadRouter(e *Env) (Router, error) {
	c := Router{
		Common:                 loadCommon(e),
		NATS:                   loadNATS(e),
		DatabaseURL:            e.DatabaseURL("DATABASE_URL"),
		Addr:                   e.Addr("ROUTER_ADDR", ":8081"),
		CAMSURL:                e.URL("CAMS_API_URL", "http://127.0.0.1:8001", "http", "https"),
		CAMSAPIKey:             e.String("CAMS_API_KEY", ""),
		CAMSTimeout:            e.Duration("CAMS_TIMEOUT", 2*time.Second, time.Millisecond, 5*time.Minute),
		CAMSCacheTTL:           e.Duration("CAMS_CACHE_TTL", 30*time.Second, 0, 24*time.Hour),
		AdminAPIKeys:           keys(e, "ADMIN_API_KEYS"),
		DeliveryMaxAttempts:    e.Int("DELIVERY_MAX_ATTEMPTS", 10, 1, 1000),
		DeliveryBackoffInitial: e.Duration("DELIVERY_BACKOFF_INITIAL", time.Second, time.Millisecond, 24*time.Hour),
		DeliveryBackoffMax:     e.Duration("DELIVERY_BACKOFF_MAX", 5*time.Minute, time.Millisecond, 7*24*time.Hour),
		DeliveryTimeout:        e.Duration("DELIVERY_TIMEOUT", 10*time.Second, time.Millisecond, time.Hour),
		AllowPrivateNetworks:   e.Bool("DELIVERY_ALLOW_PRIVATE_NETWORKS", false),
		DestinationConcurrency: e.Int("DELIVERY_DESTINATION_CONCURRENCY", 32, 1, 4096),
		DestinationRate:        e.Float("DELIVERY_DESTINATION_RATE", 0, 0, 1e9),
		BreakerFailures:        e.Int("BREAKER_FAILURES", 5, 1, 1_000_000),
		BreakerOpenTimeout:     e.Duration("BREAKER_OPEN_TIMEOUT", 30*time.Second, time.Millisecond, 24*time.Hour),
		MessageRetention:       e.Duration("MESSAGE_RETENTION", 168*time.Hour, time.Minute, 100*365*24*time.Hour),
		Audit:                  loadAudit(e),
		HoldMaxAge:             e.Duration("HOLD_MAX_AGE", 24*time.Hour, time.Second, 100*365*24*time.Hour),
	}
	if c.DeliveryBackoffMax < c.DeliveryBackoffInitial {
		e.fail("DELIVERY_BACKOFF_MAX", "%s is below DELIVERY_BACKOFF_INITIAL (%s)", c.DeliveryBackoffMax, c.DeliveryBackoffInitial)
	}
	for _, s := range strings.Split(e.String("DELIVERY_SIGNING_SECRETS", ""), ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.SigningSecrets = append(c.SigningSecrets, s)
		}
	}
	for _, s := range c.SigningSecrets {
		if !strings.HasPrefix(s, "whsec_") {
			e.fail("DELIVERY_SIGNING_SECRETS", "every secret must look like whsec_<base64>")
		}
	}
	return c, e.Err()
}

// LoadCAMS reads the reference CAMS configuration.
func LoadCAMS(e *Env) (CAMS, error) {
	c := CAMS{
		Common:       loadCommon(e),
		DatabaseURL:  e.DatabaseURL("DATABASE_URL"),
		Addr:         e.Addr("CAMS_ADDR", ":8001"),
		AdminAPIKeys: keys(e, "ADMIN_API_KEYS"),
	}
	c.SecretsKey = secretsKey(e, "CAMS_SECRETS_KEY")
	c.SecretsKeyPrevious = secretsKey(e, "CAMS_SECRETS_KEY_PREVIOUS")
	if c.SecretsKeyPrevious != "" && c.SecretsKey == "" {
		e.fail("CAMS_SECRETS_KEY_PREVIOUS", "is set but CAMS_SECRETS_KEY is not (the previous key only helps a rotation to the current one)")
	}
	return c, e.Err()
}

// secretsKey reads a 32-byte key given as base64; the error never shows the value.
func secretsKey(e *Env, name string) string {
	v := e.String(name, "")
	if v == "" {
		return ""
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(v); err == nil {
			if len(k) != 32 {
				e.fail(name, "must be base64 of 32 bytes, got %d bytes (generate one with: openssl rand -base64 32)", len(k))
			}
			return v
		}
	}
	e.fail(name, "is not base64 (generate one with: openssl rand -base64 32)")
	return v
}

// LogAttrs returns the settings as log attributes, secrets masked.
func (c Common) LogAttrs() []slog.Attr {
	return []slog.Attr{
		slog.String("log_level", c.LogLevel), slog.String("log_format", c.LogFormat),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout), slog.String("pprof_addr", c.PprofAddr),
	}
}

func (n NATS) logAttrs() []slog.Attr {
	return []slog.Attr{slog.String("nats_url", Mask(n.URL)), slog.Bool("nats_creds", n.CredsFile != "" || n.NKeyFile != ""), slog.Bool("nats_tls", n.TLSCA != "" || n.TLSCert != ""),
		slog.Int("stream_replicas", n.Stream.Replicas), slog.Duration("stream_max_age", n.Stream.MaxAge), slog.Int64("stream_max_bytes", n.Stream.MaxBytes)}
}

func present(s string) string {
	if s == "" {
		return "none"
	}
	return "set (masked)"
}

// LogAttrs returns the settings as log attributes, secrets masked.
func (c Ingest) LogAttrs() []slog.Attr {
	return append(append(c.Common.LogAttrs(), c.NATS.logAttrs()...),
		slog.String("ingest_addr", c.Addr), slog.Int("max_message_bytes", c.MaxMessageBytes),
		slog.Int("max_batch_bytes", c.MaxBatchBytes),
		slog.String("ingest_api_keys", present(c.APIKeys)), slog.Float64("ingest_rate_limit", c.RateLimit),
		slog.Int("ingest_rate_burst", c.RateBurst))
}

// LogAttrs returns the settings as log attributes, secrets masked.
func (c Router) LogAttrs() []slog.Attr {
	return append(append(c.Common.LogAttrs(), c.NATS.logAttrs()...),
		slog.String("database_url", MaskDSN(c.DatabaseURL)), slog.String("router_addr", c.Addr),
		slog.String("cams_api_url", Mask(c.CAMSURL)), slog.String("cams_api_key", present(c.CAMSAPIKey)),
		slog.Duration("cams_timeout", c.CAMSTimeout), slog.Duration("cams_cache_ttl", c.CAMSCacheTTL),
		slog.String("admin_api_keys", present(c.AdminAPIKeys)),
		slog.Int("delivery_max_attempts", c.DeliveryMaxAttempts),
		slog.Duration("delivery_backoff_initial", c.DeliveryBackoffInitial),
		slog.Duration("delivery_backoff_max", c.DeliveryBackoffMax),
		slog.Duration("delivery_timeout", c.DeliveryTimeout),
		slog.Bool("delivery_allow_private_networks", c.AllowPrivateNetworks),
		slog.Int("delivery_signing_secrets", len(c.SigningSecrets)),
		slog.Int("delivery_destination_concurrency", c.DestinationConcurrency),
		slog.Float64("delivery_destination_rate", c.DestinationRate),
		slog.Int("breaker_failures", c.BreakerFailures), slog.Duration("breaker_open_timeout", c.BreakerOpenTimeout),
		slog.Duration("message_retention", c.MessageRetention), slog.Duration("hold_max_age", c.HoldMaxAge))
}

// LogAttrs returns the settings as log attributes, secrets masked.
func (c CAMS) LogAttrs() []slog.Attr {
	return append(c.Common.LogAttrs(), slog.String("database_url", MaskDSN(c.DatabaseURL)),
		slog.String("cams_addr", c.Addr), slog.String("admin_api_keys", present(c.AdminAPIKeys)),
		slog.String("cams_secrets_key", present(c.SecretsKey)), slog.String("cams_secrets_key_previous", present(c.SecretsKeyPrevious)))
}

// MaskDSN masks the password of a Postgres URL or key=value connection string.
func MaskDSN(dsn string) string {
	if strings.Contains(dsn, "://") {
		return Mask(dsn)
	}
	f := strings.Fields(dsn)
	for i, kv := range f {
		if strings.HasPrefix(strings.ToLower(kv), "password=") {
			f[i] = "password=xxxxx"
		}
	}
	return strings.Join(f, " ")
}
