package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/cmd/routerctl/internal/bench/benchtest"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/logging"
	"github.com/msgrouter/msgrouter/internal/router"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

// startRealRouter is a StartRouterFunc running the real router (router.Run) in this
// process, on the real Postgres database dbURL and env's JetStream and fake CAMS.
func startRealRouter(t *testing.T, env *benchtest.Env, dbURL string) StartRouterFunc {
	return func(context.Context) ([]int, func() error, error) {
		cfg, err := config.LoadRouter(config.FromMap(map[string]string{
			"NATS_URL": env.NATSURL, "DATABASE_URL": dbURL, "CAMS_API_URL": env.CAMSURL,
			"ROUTER_ADDR": "127.0.0.1:0", "DELIVERY_ALLOW_PRIVATE_NETWORKS": "true",
			"SHUTDOWN_TIMEOUT": "10s", "LOG_LEVEL": "warn",
		}))
		if err != nil {
			return nil, nil, err
		}
		log, err := logging.New(testWriter{t}, "warn", "text")
		if err != nil {
			return nil, nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- router.Run(ctx, cfg, router.Options{Logger: log, Registry: prometheus.NewRegistry()}) }()
		stop := func() error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(30 * time.Second):
				return context.DeadlineExceeded
			}
		}
		return nil, stop, nil // in this process: its CPU is the load tool's line
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func dbName(t *testing.T, url string) string {
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	return cfg.Database
}

// TestDrainStageWithTheRealRouter preloads a backlog with no router, then starts the
// real router on the real Postgres: every message arrives once, the timing is
// from the router's start, and the CPU budget finds the router's Postgres
// backends by database name.
func TestDrainStageWithTheRealRouter(t *testing.T) {
	t.Parallel()
	b := setup(t, benchtest.Options{NoRouter: true})
	dbURL := pgtest.NewURL(t)
	b.cfg.Stage, b.cfg.Inbox, b.cfg.Count, b.cfg.Agents = StageDrain, InboxBoth, 300, 4
	b.cfg.StartRouter = startRealRouter(t, b.env, dbURL)
	b.cfg.CPU = []CPUProcess{{Name: "postgres", Comm: "postgres", CmdlineContains: dbName(t, dbURL)}}

	res, err := Run(context.Background(), b.cfg)
	require.NoError(t, err)
	require.Equal(t, StageDrain, res.Stage)
	require.Equal(t, ModeNATS, res.Mode)
	require.EqualValues(t, 300, res.Accepted)
	require.EqualValues(t, 300, res.Delivered)
	require.Zero(t, res.Missing)
	require.Zero(t, res.Duplicates)
	require.NotNil(t, res.Drain)
	require.EqualValues(t, 300, res.Drain.Backlog)
	require.Positive(t, res.Drain.FirstDeliverySeconds)
	require.GreaterOrEqual(t, res.Drain.DrainSeconds, res.Drain.FirstDeliverySeconds)
	require.InDelta(t, 300/res.Drain.DrainSeconds, res.DeliveredPerSec, 0.01)

	require.EqualValues(t, 300, res.CPUMessages)
	require.Len(t, res.CPU, 3)
	pg, self, total := res.CPU[0], res.CPU[1], res.CPU[2]
	require.Equal(t, "postgres", pg.Process)
	require.Positive(t, pg.Processes, "the router's backends on its database")
	require.Equal(t, "load tool (routerctl)", self.Process)
	require.Positive(t, self.CPUSeconds, "the router ran in this process and delivered 300 messages")
	require.InDelta(t, self.CPUSeconds*1e6/300, self.MicrosPerMessage, 1e-6)
	require.Equal(t, "total", total.Process)
	require.InDelta(t, pg.CPUSeconds+self.CPUSeconds, total.CPUSeconds, 1e-9)
	requireCleanedUp(t, b, res)
}

// ingestCounts is the part of an ingest stage's Result that does not depend on timing.
type ingestCounts struct {
	Accepted, Delivered, Missing, ErrorCount, CPUMessages int64
	DeliveredPerSec                                       float64
	Batch                                                 int
	Hints                                                 []string
}

// TestIngestStage measures accepts only: no agents, no inbox, nothing expected to
// arrive, and the budget is per accepted message.
func TestIngestStage(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{0, 50} {
		b := setup(t, benchtest.Options{NoRouter: true})
		b.cfg.Stage, b.cfg.Count, b.cfg.Batch = StageIngest, 300, batch
		b.cfg.CPU = []CPUProcess{}

		res, err := Run(context.Background(), b.cfg)
		require.NoError(t, err)
		require.Equal(t, ingestCounts{Accepted: 300, CPUMessages: 300, Batch: batch}, ingestCounts{
			Accepted: res.Accepted, Delivered: res.Delivered, Missing: res.Missing, ErrorCount: res.ErrorCount,
			CPUMessages: res.CPUMessages, DeliveredPerSec: res.DeliveredPerSec, Batch: res.Batch, Hints: res.Hints,
		}, "every message accepted and in the budget, nothing delivered or missing, no error, no hint")
		require.Positive(t, res.AcceptedPerSec)
		require.Len(t, res.CPU, 2) // the load tool and the total
		require.Zero(t, b.env.CAMS.Len(), "the ingest stage registers no agents")
		require.EqualValues(t, 0, b.env.Routed.Load())
	}
}

// TestBatchThroughThePipeline sends batches to the fake system and every message
// arrives once.
func TestBatchThroughThePipeline(t *testing.T) {
	t.Parallel()
	b := setup(t, benchtest.Options{})
	b.cfg.Batch, b.cfg.Count, b.cfg.Clients = 64, 300, 2 // 300 = 4 full batches + 44

	res, err := Run(context.Background(), b.cfg)
	require.NoError(t, err)
	requireAllDelivered(t, res, 300)
	require.EqualValues(t, 300, res.CPUMessages)
	requireCleanedUp(t, b, res)
}

func TestStageConfigErrors(t *testing.T) {
	b := setup(t, benchtest.Options{NoRouter: true})
	for name, f := range map[string]func(c *Config){
		"unknown stage":         func(c *Config) { c.Stage = "warp" },
		"drain without router":  func(c *Config) { c.Stage = StageDrain },
		"drain with a rate":     func(c *Config) { c.Stage, c.Rate, c.StartRouter = StageDrain, 100, startRealRouter(t, b.env, "") },
		"batch over the limit":  func(c *Config) { c.Batch = MaxBatch + 1 },
		"batch in nats mode":    func(c *Config) { c.Batch, c.Mode = 10, ModeNATS },
		"ingest stage via nats": func(c *Config) { c.Stage, c.Mode = StageIngest, ModeNATS },
	} {
		c := b.cfg
		f(&c)
		_, err := Run(context.Background(), c)
		require.ErrorIs(t, err, ErrConfig, name)
	}
}
