package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/config"
)

func TestRouterDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.LoadRouter(config.FromMap(nil))
	require.NoError(t, err)
	require.Equal(t, "nats://127.0.0.1:4222", c.NATS.URL)
	require.Equal(t, "http://127.0.0.1:8001", c.CAMSURL)
	require.Equal(t, ":8081", c.Addr)
	require.Equal(t, 10, c.DeliveryMaxAttempts)
	require.Equal(t, time.Second, c.DeliveryBackoffInitial)
	require.Equal(t, 5*time.Minute, c.DeliveryBackoffMax)
	require.Equal(t, 10*time.Second, c.DeliveryTimeout)
	require.Equal(t, 2*time.Second, c.CAMSTimeout)
	require.Equal(t, 30*time.Second, c.CAMSCacheTTL)
	require.Equal(t, 5, c.BreakerFailures)
	require.Equal(t, 30*time.Second, c.BreakerOpenTimeout)
	require.Equal(t, 168*time.Hour, c.MessageRetention)
	require.Equal(t, 24*time.Hour, c.HoldMaxAge)
	require.Equal(t, 10*time.Second, c.ShutdownTimeout)
	require.False(t, c.AllowPrivateNetworks)
	require.Equal(t, "info", c.LogLevel)
	require.Equal(t, "json", c.LogFormat)
}

func TestIngestDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.LoadIngest(config.FromMap(map[string]string{"INGEST_RATE_LIMIT": "50"}))
	require.NoError(t, err)
	require.Equal(t, ":8080", c.Addr)
	require.Equal(t, 262144, c.MaxMessageBytes)
	require.Equal(t, 100, c.RateBurst, "burst defaults to 2×limit")
}

// A bad value stops the binary with one line naming the variable and the fix.
func TestInvalidValuesNameTheVariable(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"DELIVERY_TIMEOUT":                "ten",
		"DELIVERY_MAX_ATTEMPTS":           "0",
		"BREAKER_FAILURES":                "many",
		"DELIVERY_ALLOW_PRIVATE_NETWORKS": "maybe",
		"CAMS_API_URL":                    "ftp://cams",
		"ROUTER_ADDR":                     "nowhere",
		"LOG_LEVEL":                       "loud",
		"LOG_FORMAT":                      "xml",
		"NATS_URL":                        "localhost",
		"DELIVERY_SIGNING_SECRETS":        "not-a-whsec",
		"ADMIN_API_KEYS_FILE":             "/does/not/exist",
		"MESSAGE_RETENTION":               "1s",
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := config.LoadRouter(config.FromMap(map[string]string{name: value}))
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), name+": "), err.Error())
			require.NotContains(t, err.Error(), "\n")
		})
	}
	_, err := config.LoadRouter(config.FromMap(map[string]string{"DELIVERY_BACKOFF_INITIAL": "10s", "DELIVERY_BACKOFF_MAX": "1s"}))
	require.ErrorContains(t, err, "DELIVERY_BACKOFF_MAX")
	_, err = config.LoadIngest(config.FromMap(map[string]string{"MAX_MESSAGE_BYTES": "-5"}))
	require.ErrorContains(t, err, "MAX_MESSAGE_BYTES")
	for _, v := range []string{"abc", "-1", "0", "1GiB", "4294967296"} {
		_, err = config.LoadIngest(config.FromMap(map[string]string{"MAX_BATCH_BYTES": v}))
		require.Error(t, err, v)
		require.True(t, strings.HasPrefix(err.Error(), "MAX_BATCH_BYTES: "), err.Error())
	}
	c, err := config.LoadIngest(config.FromMap(nil))
	require.NoError(t, err)
	require.Equal(t, 4194304, c.MaxBatchBytes, "DESIGN §7 default")
	c, err = config.LoadIngest(config.FromMap(map[string]string{"MAX_BATCH_BYTES": "1048576"}))
	require.NoError(t, err)
	require.Equal(t, 1048576, c.MaxBatchBytes)
}

func TestSecretsMasked(t *testing.T) {
	t.Parallel()
	require.Equal(t, "postgres://u:xxxxx@db/x", config.MaskDSN("postgres://u:hunter2@db/x"))
	require.Equal(t, "host=db password=xxxxx", config.MaskDSN("host=db password=hunter2"))
	c, err := config.LoadRouter(config.FromMap(map[string]string{
		"DATABASE_URL": "postgres://u:hunter2@db/x", "ADMIN_API_KEYS": "ops:topsecret", "CAMS_API_KEY": "camssecret",
		"DELIVERY_SIGNING_SECRETS": "whsec_c2VjcmV0",
	}))
	require.NoError(t, err)
	for _, a := range c.LogAttrs() {
		v := a.Value.String()
		for _, secret := range []string{"hunter2", "topsecret", "camssecret", "whsec_c2VjcmV0"} {
			require.NotContains(t, v, secret, a.Key)
		}
	}
}

func TestStreamSettings(t *testing.T) {
	t.Parallel()
	for _, load := range []func(*config.Env) (config.NATS, error){
		func(e *config.Env) (config.NATS, error) { c, err := config.LoadIngest(e); return c.NATS, err },
		func(e *config.Env) (config.NATS, error) { c, err := config.LoadRouter(e); return c.NATS, err },
	} {
		c, err := load(config.FromMap(nil))
		require.NoError(t, err)
		require.Equal(t, config.Stream{Replicas: 1, MaxAge: 168 * time.Hour, MaxBytes: -1}, c.Stream)

		c, err = load(config.FromMap(map[string]string{"STREAM_REPLICAS": "3", "STREAM_MAX_AGE": "24h", "STREAM_MAX_BYTES": "1073741824"}))
		require.NoError(t, err)
		require.Equal(t, config.Stream{Replicas: 3, MaxAge: 24 * time.Hour, MaxBytes: 1 << 30}, c.Stream)

		for name, bad := range map[string]string{
			"STREAM_REPLICAS": "0", "STREAM_MAX_AGE": "forever", "STREAM_MAX_BYTES": "0",
		} {
			_, err := load(config.FromMap(map[string]string{name: bad}))
			require.Error(t, err, name)
			require.True(t, strings.HasPrefix(err.Error(), name+":"), err.Error())
		}
		_, err = load(config.FromMap(map[string]string{"STREAM_REPLICAS": "7"}))
		require.ErrorContains(t, err, "STREAM_REPLICAS")
		_, err = load(config.FromMap(map[string]string{"STREAM_MAX_BYTES": "-2"}))
		require.ErrorContains(t, err, "STREAM_MAX_BYTES")
	}
}
