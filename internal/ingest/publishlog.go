package ingest

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// PublishFailureLogInterval is how often failed publishes are summarised in the log
// (issue 9: a 19 s outage wrote 14,005 lines, one per failed publish).
const PublishFailureLogInterval = 10 * time.Second

// failureLog aggregates failed publishes: the first failure after a quiet interval is
// logged at once (with its message_id), and the failures that follow within each
// interval are summarised in one WARN line with their count and the last error. Every
// failure is counted in exactly one line. Requests still count each failure in the
// metrics (msgrouter_ingest_requests_total by outcome).
type failureLog struct {
	log      *slog.Logger
	interval time.Duration

	mu     sync.Mutex
	open   bool // a summary is due at the end of the current interval
	count  int
	last   error
	lastID string
	timer  *time.Timer
}

func newFailureLog(log *slog.Logger, interval time.Duration) *failureLog {
	return &failureLog{log: log, interval: interval}
}

// record notes one failed publish of message id.
func (f *failureLog) record(ctx context.Context, id string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.open {
		f.open = true
		f.timer = time.AfterFunc(f.interval, f.tick)
		f.log.WarnContext(ctx, "error publishing message", "message_id", id, "error", err,
			"note", "further failures are summarised every "+f.interval.String())
		return
	}
	f.count++
	f.last, f.lastID = err, id
}

// tick ends an interval: it writes the summary, and keeps the window open for
// another interval when there was something to summarise.
func (f *failureLog) tick() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.count == 0 {
		f.open = false
		return
	}
	f.summaryLocked()
	f.timer = time.AfterFunc(f.interval, f.tick)
}

// flush writes the pending summary now (at shutdown).
func (f *failureLog) flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.timer != nil {
		f.timer.Stop()
	}
	if f.count > 0 {
		f.summaryLocked()
	}
	f.open = false
}

func (f *failureLog) summaryLocked() {
	f.log.Warn("error publishing messages", "failures", f.count, "interval", f.interval.String(),
		"last_error", f.last, "last_message_id", f.lastID)
	f.count, f.last, f.lastID = 0, nil, ""
}
