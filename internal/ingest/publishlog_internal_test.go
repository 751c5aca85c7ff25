package ingest

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/testutil/logtest"
)

// counted sums the failures the lines account for: 1 for an immediate line, the
// "failures" field for a summary.
func counted(lines []map[string]any) int {
	n := 0
	for _, l := range lines {
		if f, ok := l["failures"].(float64); ok {
			n += int(f)
		} else {
			n++
		}
	}
	return n
}

func TestFailureLogAggregates(t *testing.T) {
	t.Parallel()
	var buf logtest.Buffer
	f := newFailureLog(slog.New(slog.NewJSONHandler(&buf, nil)), time.Hour)
	for i := range 14005 {
		f.record(t.Context(), fmt.Sprint("id-", i), errors.New(fmt.Sprint("timeout ", i)))
	}
	f.flush()
	lines := buf.JSONLines(t)
	require.Len(t, lines, 2, "one line at the first failure, one summary")
	require.Equal(t, "id-0", lines[0]["message_id"])
	require.Equal(t, float64(14004), lines[1]["failures"])
	require.Equal(t, "timeout 14004", lines[1]["last_error"])
	require.Equal(t, "WARN", lines[1]["level"])
	require.Equal(t, 14005, counted(lines))

	// After a quiet interval the next failure is logged at once again.
	f.record(t.Context(), "id-x", errors.New("x"))
	require.Len(t, buf.JSONLines(t), 3)
	f.flush()
}

func TestFailureLogSummarisesEachInterval(t *testing.T) {
	t.Parallel()
	var buf logtest.Buffer
	f := newFailureLog(slog.New(slog.NewJSONHandler(&buf, nil)), 20*time.Millisecond)
	const n = 500
	for i := range n {
		f.record(t.Context(), fmt.Sprint("id-", i), errors.New("boom"))
	}
	// The timer writes the summary without a flush; wait for it on a deadline.
	deadline := time.Now().Add(10 * time.Second)
	for counted(buf.JSONLines(t)) < n {
		require.True(t, time.Now().Before(deadline), "summary not written: %v", buf.JSONLines(t))
		time.Sleep(5 * time.Millisecond)
	}
	lines := buf.JSONLines(t)
	require.Equal(t, n, counted(lines), "every failure counted once")
	require.LessOrEqual(t, len(lines), 1+n/10, "aggregated, not one line per failure")
	f.flush()
}
