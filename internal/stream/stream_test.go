package stream_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/testutil/logtest"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
	"github.com/msgrouter/msgrouter/internal/testutil/promtest"
)

func logger() (*slog.Logger, *logtest.Buffer) {
	var buf logtest.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

func info(t *testing.T, js jetstream.JetStream) *jetstream.StreamInfo {
	t.Helper()
	s, err := js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	i, err := s.Info(t.Context())
	require.NoError(t, err)
	return i
}

func TestEnsureCreatesWithDefaults(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	log, buf := logger()
	_, err := stream.EnsureWith(t.Context(), js, stream.DefaultSettings(), log)
	require.NoError(t, err)
	c := info(t, js).Config
	require.Equal(t, 1, c.Replicas)
	require.Equal(t, 168*time.Hour, c.MaxAge)
	require.Equal(t, int64(-1), c.MaxBytes)
	require.Equal(t, jetstream.FileStorage, c.Storage)
	require.Equal(t, []string{stream.Subject, stream.SubjectAll}, c.Subjects)

	// A second start with the same settings changes nothing and warns about nothing.
	_, err = stream.EnsureWith(t.Context(), js, stream.DefaultSettings(), log)
	require.NoError(t, err)
	require.NotContains(t, buf.String(), "level=WARN")
}

func TestEnsureOnCluster(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	_, js := cl.Connect(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	t.Run("STREAM_REPLICAS=3 creates R3", func(t *testing.T) {
		log, _ := logger()
		_, err := stream.EnsureWith(ctx, js, stream.Settings{Replicas: 3, MaxAge: time.Hour, MaxBytes: 1 << 30}, log)
		require.NoError(t, err)
		i := info(t, js)
		require.Equal(t, 3, i.Config.Replicas)
		require.Equal(t, time.Hour, i.Config.MaxAge)
		require.Equal(t, int64(1<<30), i.Config.MaxBytes)
		require.NotNil(t, i.Cluster)
		require.Len(t, i.Cluster.Replicas, 2, "a leader and two followers")
		require.NoError(t, js.DeleteStream(ctx, stream.Name))
	})

	t.Run("an operator's R3 stream stays R3 and gets the missing subject", func(t *testing.T) {
		// Made by hand: R3, memory storage, a 1h age limit, one of the two subjects.
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: stream.Name, Subjects: []string{stream.Subject}, Replicas: 3,
			Storage: jetstream.MemoryStorage, MaxAge: time.Hour, MaxBytes: 1 << 20,
		})
		require.NoError(t, err)
		log, buf := logger()
		// Every binary starts with the defaults (R1, 168h, unlimited), several at once.
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Go(func() {
				_, err := stream.EnsureWith(ctx, js, stream.DefaultSettings(), log)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		c := info(t, js).Config
		require.Equal(t, 3, c.Replicas, "never lowered")
		require.Equal(t, jetstream.MemoryStorage, c.Storage, "never overwritten")
		require.Equal(t, time.Hour, c.MaxAge)
		require.Equal(t, int64(1<<20), c.MaxBytes)
		require.ElementsMatch(t, []string{stream.Subject, stream.SubjectAll}, c.Subjects, "the missing contract subject is added")
		out := buf.String()
		for _, name := range []string{"STREAM_REPLICAS: stream has 3, configured 1", "STREAM_MAX_AGE", "STREAM_MAX_BYTES", "storage"} {
			require.Contains(t, out, name)
		}
		require.NoError(t, js.DeleteStream(ctx, stream.Name))
	})

	t.Run("a wildcard subject covering the contract is kept as is", func(t *testing.T) {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream.Name, Subjects: []string{"router.>"}, Replicas: 3})
		require.NoError(t, err)
		_, err = stream.EnsureWith(ctx, js, stream.Settings{Replicas: 3, MaxAge: 0, MaxBytes: -1}, nil)
		require.NoError(t, err)
		c := info(t, js).Config
		require.Equal(t, []string{"router.>"}, c.Subjects)
		require.Equal(t, 3, c.Replicas)
		require.NoError(t, js.DeleteStream(ctx, stream.Name))
	})
}

func TestHealthGauges(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	_, js := cl.Connect(t)
	_, err := stream.EnsureWith(t.Context(), js, stream.Settings{Replicas: 3, MaxAge: time.Hour, MaxBytes: -1}, nil)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	h := stream.NewHealth(reg)
	gauge := func(name string) float64 {
		v, ok := promtest.Lookup(t, reg, name)
		require.True(t, ok, "no metric %s", name)
		return v
	}
	require.Eventually(t, func() bool {
		return h.Observe(t.Context(), js) == nil && gauge("msgrouter_stream_replicas_current") == 3
	}, 60*time.Second, 50*time.Millisecond)
	require.Equal(t, float64(3), gauge("msgrouter_stream_replicas"))
	require.Equal(t, float64(1), gauge("msgrouter_stream_has_leader"))

	// One node gone: a replica is offline, the stream keeps its leader (quorum 2 of 3).
	leader, err := js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	for _, s := range cl.Servers {
		if s.Name() != leader.CachedInfo().Cluster.Leader {
			s.Shutdown()
			break
		}
	}
	require.Eventually(t, func() bool {
		return h.Observe(t.Context(), js) == nil && gauge("msgrouter_stream_replicas_current") == 2
	}, 60*time.Second, 100*time.Millisecond)
	require.Equal(t, float64(1), gauge("msgrouter_stream_has_leader"))
}
