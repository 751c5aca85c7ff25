package outbox

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// go test -run '^$' -bench . -benchmem ./internal/outbox/
//
// Both benchmarks run against the real Postgres of pgtest, one database each, so
// their numbers compare with the FIELD-NOTES measurements (multi-row insert ~61k
// rows/s on one connection, claim + update ~53k rows/s with 4 workers).

func BenchmarkTakeover(b *testing.B) {
	for _, size := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			f := newStoreFixture(b)
			token := uuid.New()
			recs := pendingRecords(size, "agent-bench@example.com")
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for i := range recs {
					recs[i].ID = uuid.New()
				}
				inserted, _, err := f.store.Takeover(f.ctx, recs, token, time.Hour)
				if err != nil || len(inserted) != size {
					b.Fatalf("takeover: %d inserted, %v", len(inserted), err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

func BenchmarkClaimComplete(b *testing.B) {
	const batch = 256
	f := newStoreFixture(b)
	recs := pendingRecords(batch, "agent-bench@example.com")
	results := make([]Result, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Fill the outbox with a batch of due rows, off the clock.
		b.StopTimer()
		for j := range recs {
			recs[j].ID = uuid.New()
		}
		_, _, err := f.store.Takeover(f.ctx, recs, uuid.New(), 0)
		require.NoError(b, err)
		b.StartTimer()

		claimed, err := f.store.Claim(f.ctx, batch, time.Minute)
		if err != nil || len(claimed) != batch {
			b.Fatalf("claim: %d rows, %v", len(claimed), err)
		}
		now := time.Now()
		for j, c := range claimed {
			results[j] = Result{ID: c.ID, Token: c.Token, Kind: Delivered, At: now, Duration: time.Millisecond}
		}
		final, err := f.store.Complete(f.ctx, results, 10)
		if err != nil || len(final) != batch {
			b.Fatalf("complete: %d rows, %v", len(final), err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
}
