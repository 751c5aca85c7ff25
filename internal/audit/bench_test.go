package audit_test

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msgrouter/msgrouter/internal/audit"
	"github.com/msgrouter/msgrouter/internal/periodic"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

// BenchmarkAudit audits a stream of AUDIT_BENCH_MESSAGES (default 200,000) messages,
// every one recorded, and reports the rate and the peak heap in use during a run:
// the heap must not grow with the stream (chunks of 10,000).
//
//	AUDIT_BENCH_MESSAGES=1000000 go test -run '^$' -bench Audit -benchtime 3x ./internal/audit
//
// Measured on the 2-core machine with an out-of-process nats-server
// (AUDIT_BENCH_NATS_URL): 100,000 messages 81k msgs/s, peak heap growth 7.2 MiB;
// 400,000 messages 46k msgs/s, 8.2 MiB. The heap does not grow with the stream.
func BenchmarkAudit(b *testing.B) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("AUDIT_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	// AUDIT_BENCH_NATS_URL: a nats-server of its own (out of process), so the heap
	// figure is the audit's alone; by default an in-process server, whose caches
	// count in the heap too.
	var js jetstream.JetStream
	if url := os.Getenv("AUDIT_BENCH_NATS_URL"); url != "" {
		nc, err := nats.Connect(url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		if js, err = jetstream.New(nc); err != nil {
			b.Fatal(err)
		}
		_ = js.DeleteStream(context.Background(), stream.Name) // a fresh stream each run
	} else {
		_, js = natstest.Start(b).Connect(b)
	}
	ctx := context.Background()
	if _, err := stream.Ensure(ctx, js); err != nil {
		b.Fatal(err)
	}
	pool := pgtest.New(b)
	rows := make([][]any, 0, 10_000)
	flush := func() {
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"messages"}, []string{"message_id", "ai_agent_address", "status", "accepted_at"},
			pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
		rows = rows[:0]
	}
	body := []byte(`{"aiAgentAddress":"agent@example.com","payload":{"n":1}}`)
	var futures []jetstream.PubAckFuture
	now := time.Now()
	for i := range n {
		id := uuid.New()
		m := nats.NewMsg(stream.Subject)
		m.Header.Set(jetstream.MsgIDHeader, id.String())
		m.Data = body
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
		rows = append(rows, []any{id, "agent@example.com", "DELIVERED", now})
		if len(rows) == cap(rows) {
			flush()
		}
		if len(futures) == 2000 || i == n-1 { // below the client's 4,000 pending async publishes
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
			futures = futures[:0]
		}
	}
	if len(rows) > 0 {
		flush()
	}

	var peak atomic.Uint64
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	sampling, stop := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		periodic.Every(sampling, 5*time.Millisecond, 5*time.Millisecond, func(context.Context) {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		})
	}()
	b.ResetTimer()
	for b.Loop() {
		r, err := audit.Run(ctx, js, pool, audit.Config{IdleTimeout: 5 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		if r.StreamMessages != int64(n) || !r.OK() {
			b.Fatalf("read %d of %d, missing %d", r.StreamMessages, n, r.Missing)
		}
	}
	b.StopTimer()
	stop()
	<-sampled
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(peak.Load()-min(peak.Load(), base.HeapInuse))/(1<<20), "peak-heap-growth-MiB")
}
