package bench

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/msgrouter/msgrouter/internal/hdr"
)

// Result is what a run measured. Counters cover the whole run; throughput and
// latencies cover the messages sent after the warmup.
type Result struct {
	RunID           string  `json:"runId"`
	Mode            string  `json:"mode"`
	Inbox           string  `json:"inbox"`
	Clients         int     `json:"clients"`
	TargetRate      float64 `json:"targetRate,omitempty"` // 0 = closed loop
	Agents          int     `json:"agents"`
	OrderingKeys    int     `json:"orderingKeys,omitempty"`
	PayloadBytes    int     `json:"payloadBytes"`
	WarmupSeconds   float64 `json:"warmupSeconds"`
	DurationSeconds float64 `json:"durationSeconds"` // measured sending time, warmup excluded

	Sent       int64 `json:"sent"`
	Accepted   int64 `json:"accepted"`
	Delivered  int64 `json:"delivered"`  // distinct messages that reached an inbox
	Duplicates int64 `json:"duplicates"` // arrivals of a message already seen
	Missing    int64 `json:"missing"`    // accepted, not delivered within the drain timeout
	// DeliveredUnaccepted arrived although their submission failed (a timeout after
	// the server had taken it, say): not lost, not counted as missing.
	DeliveredUnaccepted int64            `json:"deliveredUnaccepted"`
	Unexpected          int64            `json:"unexpected"` // arrivals that carry no seq of this run
	ErrorCount          int64            `json:"errorCount"`
	Errors              map[string]int64 `json:"errors"`

	AcceptedPerSec  float64 `json:"acceptedPerSec"`
	DeliveredPerSec float64 `json:"deliveredPerSec"`
	Latency         struct {
		SubmitToAccept   Latency `json:"submitToAccept"`
		AcceptToDelivery Latency `json:"acceptToDelivery"`
		SubmitToDelivery Latency `json:"submitToDelivery"`
	} `json:"latency"`

	// Stage is all, ingest or drain; Batch > 1 when messages went in batches.
	Stage string `json:"stage"`
	Batch int    `json:"batch,omitempty"`
	// Drain is the drain stage's timing (nil for the other stages).
	Drain *DrainResult `json:"drain,omitempty"`
	// RouterCounters are the router's outbox counters at the end of a drain
	// (Config.RouterMetricsURL), by series.
	RouterCounters map[string]float64 `json:"routerCounters,omitempty"`
	// CPU is the budget: CPU time per process group over CPUWindowSeconds, per
	// message of the window (CPUMessages: delivered, or accepted for ingest). The
	// last line is the total.
	CPU              []CPUBudget `json:"cpu,omitempty"`
	CPUWindowSeconds float64     `json:"cpuWindowSeconds,omitempty"`
	CPUMessages      int64       `json:"cpuMessages,omitempty"`

	Interrupted   bool     `json:"interrupted,omitempty"`
	Hints         []string `json:"hints,omitempty"`
	CleanupErrors []string `json:"cleanupErrors,omitempty"`
}

// Latency summarises one histogram, in milliseconds.
type Latency struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"meanMs"`
	P50Ms  float64 `json:"p50Ms"`
	P90Ms  float64 `json:"p90Ms"`
	P99Ms  float64 `json:"p99Ms"`
	P999Ms float64 `json:"p999Ms"`
	MaxMs  float64 `json:"maxMs"`
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

func latencyOf(h *hdr.Histogram) Latency {
	return Latency{
		Count:  h.Count(),
		MeanMs: h.Mean() / 1e6,
		P50Ms:  ms(h.Quantile(0.50)),
		P90Ms:  ms(h.Quantile(0.90)),
		P99Ms:  ms(h.Quantile(0.99)),
		P999Ms: ms(h.Quantile(0.999)),
		MaxMs:  ms(h.Max()),
	}
}

func (r *run) result() *Result {
	res := &Result{
		RunID: r.cfg.RunID, Mode: r.cfg.Mode, Inbox: r.cfg.Inbox, Clients: r.cfg.Clients,
		TargetRate: r.cfg.Rate, Agents: r.cfg.Agents, OrderingKeys: r.cfg.OrderingKeys, PayloadBytes: r.cfg.PayloadBytes,
		WarmupSeconds: r.cfg.Warmup.Seconds(),
		Sent:          r.sent.Load(), Accepted: r.accepted.Load(), Delivered: r.delivered.Load(),
		Duplicates: r.duplicates.Load(), Unexpected: r.unexpected.Load(), ErrorCount: r.failed.Load(),
	}
	r.errMu.Lock()
	res.Errors = maps.Clone(r.errs)
	r.errMu.Unlock()

	subAcc, accDel, subDel := hdr.New(), hdr.New(), hdr.New()
	from := r.measureStart.UnixNano()
	var measuredAcc, measuredDel, lastDel int64
	r.table.each(func(_ int64, e *entry) {
		intended, acc, del := e.intended.Load(), e.accepted.Load(), e.delivered.Load()
		if acc == 0 {
			if del != 0 {
				res.DeliveredUnaccepted++
			}
			return
		}
		if del == 0 {
			res.Missing++
		}
		if intended < from {
			return // warmup
		}
		measuredAcc++
		subAcc.Record(acc - intended)
		if del != 0 {
			measuredDel++
			// The inbox can see a message before the sender has processed its 202
			// or PubAck; that counts as no delay, not a negative one.
			accDel.Record(max(del-acc, 0))
			subDel.Record(del - intended)
			lastDel = max(lastDel, del)
		}
	})
	if window := r.loadEnd.Sub(r.measureStart); window > 0 {
		res.DurationSeconds = window.Seconds()
		res.AcceptedPerSec = float64(measuredAcc) / window.Seconds()
	}
	if window := time.Duration(lastDel - from); window > 0 {
		res.DeliveredPerSec = float64(measuredDel) / window.Seconds()
	}
	res.Latency.SubmitToAccept = latencyOf(subAcc)
	res.Latency.AcceptToDelivery = latencyOf(accDel)
	res.Latency.SubmitToDelivery = latencyOf(subDel)
	res.Hints = r.hints(res)
	return res
}

// errorList renders the errors as "kind count", most frequent first.
func (res *Result) errorList() []string {
	kinds := slices.SortedFunc(maps.Keys(res.Errors), func(a, b string) int {
		return cmp.Or(cmp.Compare(res.Errors[b], res.Errors[a]), cmp.Compare(a, b))
	})
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k + " " + strconv.FormatInt(res.Errors[k], 10)
	}
	return out
}

// WriteTable prints res for people.
func WriteTable(w io.Writer, res *Result) error {
	loop := fmt.Sprintf("%d in flight (closed loop)", res.Clients)
	if res.TargetRate > 0 {
		loop = fmt.Sprintf("%.0f msgs/s target (open loop, %d senders)", res.TargetRate, res.Clients)
	}
	if res.Batch > 1 {
		loop += fmt.Sprintf(", batches of %d", res.Batch)
	}
	fmt.Fprintf(w, "run %s: stage %s, mode %s, inbox %s, %s, %d agents, ~%d-byte payloads, %.1fs measured after %.1fs warmup\n",
		res.RunID, cmp.Or(res.Stage, StageAll), res.Mode, res.Inbox, loop, res.Agents, res.PayloadBytes, res.DurationSeconds, res.WarmupSeconds)
	if res.OrderingKeys > 0 {
		fmt.Fprintf(w, "messages spread over %d ordering keys\n", res.OrderingKeys)
	}
	if res.Interrupted {
		fmt.Fprintln(w, "interrupted: results cover what was sent before, without draining")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sent\taccepted\tdelivered\tmissing\tduplicates\terrors\taccepted/s\tdelivered/s\t")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t\n", res.Sent, res.Accepted, res.Delivered,
		res.Missing, res.Duplicates, res.ErrorCount, res.AcceptedPerSec, res.DeliveredPerSec)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\tcount\tp50\tp90\tp99\tp99.9\tmax\tmean\t")
	for _, row := range []struct {
		name string
		l    Latency
	}{
		{"submit→accept", res.Latency.SubmitToAccept},
		{"accept→delivery", res.Latency.AcceptToDelivery},
		{"submit→delivery", res.Latency.SubmitToDelivery},
	} {
		l := row.l
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", row.name, l.Count, l.P50Ms, l.P90Ms, l.P99Ms, l.P999Ms, l.MaxMs, l.MeanMs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeStage(w, res); err != nil {
		return err
	}
	if len(res.Errors) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "errors:")
		for _, e := range res.errorList() {
			fmt.Fprintln(w, "  "+e)
		}
	}
	if res.DeliveredUnaccepted > 0 || res.Unexpected > 0 {
		fmt.Fprintf(w, "also arrived: %d whose submission had failed, %d not from this run\n", res.DeliveredUnaccepted, res.Unexpected)
	}
	for _, h := range res.Hints {
		fmt.Fprintln(w, "hint:", h)
	}
	for _, e := range res.CleanupErrors {
		fmt.Fprintln(w, "cleanup:", e)
	}
	_, err := fmt.Fprint(w)
	return err
}
