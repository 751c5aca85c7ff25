package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// writeStage prints the drain timing and the CPU budget of res, if any.
func writeStage(w io.Writer, res *Result) error {
	if d := res.Drain; d != nil {
		fmt.Fprintf(w, "\ndrain: backlog %d, first delivery %.2fs and last %.2fs after the router's start: %.0f delivered/s (accept→delivery includes the wait for the router)\n",
			d.Backlog, d.FirstDeliverySeconds, d.DrainSeconds, res.DeliveredPerSec)
	}
	if len(res.RouterCounters) > 0 {
		fmt.Fprintln(w, "router counters after the drain (a process of its own starts at zero):")
		for _, k := range slices.Sorted(maps.Keys(res.RouterCounters)) {
			fmt.Fprintf(w, "  %s %.0f\n", k, res.RouterCounters[k])
		}
	}
	if len(res.CPU) == 0 {
		return nil
	}
	what := "delivered"
	if res.Stage == StageIngest {
		what = "accepted"
	}
	fmt.Fprintf(w, "\nCPU budget over %.1fs, %d messages %s (clock ticks of %d ms; a process that exits in the window is missing):\n",
		res.CPUWindowSeconds, res.CPUMessages, what, 1000/ClockTicks)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "process\tprocesses\tCPU s\tcores\tµs/msg\t")
	for _, b := range res.CPU {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.1f\t\n", b.Process, b.Processes, b.CPUSeconds, b.CoresUsed, b.MicrosPerMessage)
	}
	return tw.Flush()
}

// SummaryHeader and SummaryRow are one line per run for a stage table across runs
// (scripts/bench.sh): tab-separated, the CPU budget as process=µs/msg pairs.
const SummaryHeader = "run\tstage\tinbox\tagents\tbatch\tmsgs/s\tp50 ms\tp99 ms\tmissing\tCPU µs/msg"

// SummaryRow renders res under name. msgs/s is accepted/s for the ingest stage and
// delivered/s otherwise; p50/p99 are accept→delivery ("-" for ingest and drain,
// where the router's start, not its latency, dominates them).
func SummaryRow(name string, res *Result) string {
	rate, p50, p99 := res.DeliveredPerSec, fmt.Sprintf("%.1f", res.Latency.AcceptToDelivery.P50Ms), fmt.Sprintf("%.1f", res.Latency.AcceptToDelivery.P99Ms)
	inbox := res.Inbox
	switch res.Stage {
	case StageIngest:
		rate, p50, p99, inbox = res.AcceptedPerSec, "-", "-", "-"
	case StageDrain:
		p50, p99 = "-", "-"
	}
	var cpu []string
	for _, b := range res.CPU {
		cpu = append(cpu, fmt.Sprintf("%s=%.0f", strings.ReplaceAll(b.Process, " ", "_"), b.MicrosPerMessage))
	}
	batch := "-"
	if res.Batch > 1 {
		batch = fmt.Sprint(res.Batch)
	}
	return fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%.0f\t%s\t%s\t%d\t%s", name, res.Stage, inbox, res.Agents, batch, rate, p50, p99, res.Missing, strings.Join(cpu, " "))
}
