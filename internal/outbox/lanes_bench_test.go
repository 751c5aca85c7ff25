package outbox

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/msgrouter/msgrouter/internal/delivery"
)

// BenchmarkLanes measures the lanes alone (no database): Handoff of 256 jobs spread
// over 1, 16 or 256 destinations, Concurrency 32, an inbox that answers at once,
// results drained as they come. ns/job is per job, to the last one taken.
//
//	go test -run '^$' -bench Lanes -benchmem ./internal/outbox/
func BenchmarkLanes(b *testing.B) {
	for _, dests := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("destinations=%d", dests), func(b *testing.B) {
			d := New(Config{Deliverer: inboxFunc(func(context.Context, *delivery.Delivery) error { return nil }),
				Concurrency: 32, Timeout: time.Hour})
			// Start's contexts without its goroutines: results stay in d.results.
			d.ctx, d.cancel = context.WithCancel(context.Background())
			d.writeCtx, d.writeCancel = context.WithCancel(context.Background())
			d.sweepStop = func() {}
			const batch = 256
			names := make([]string, dests)
			for i := range names {
				names[i] = fmt.Sprintf("agents.a%d.inbox", i)
			}
			got := make(chan int)
			go func() {
				n := 0
				for range d.results {
					n++
				}
				got <- n
			}()
			ctx := context.Background()
			jobs := make([]*Job, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				now := time.Now()
				for i := range jobs {
					c := Claimed{ID: uuid.New(), Address: "agent-a@example.com", DestType: "NATS_SUBJECT", DestName: names[i%dests]}
					jobs[i] = d.NewJob(c, now, nil, true)
				}
				d.Handoff(ctx, jobs...)
			}
			for d.queued.Load() > 0 {
				runtime.Gosched() // until the last job is taken
			}
			b.StopTimer()
			if err := d.Stop(ctx); err != nil {
				b.Fatal(err)
			}
			if n := <-got; n != b.N*batch {
				b.Fatalf("%d results for %d jobs", n, b.N*batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/job")
		})
	}
}
