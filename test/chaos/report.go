package chaos

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Result is one scenario's outcome.
type Result struct {
	Scenario string `json:"scenario"`
	Fault    string `json:"fault"`
	Skipped  bool   `json:"skipped,omitempty"`
	// Submissions counts accepted submissions (202s and direct publishes),
	// duplicates included; Retries the submissions retried after a 503, 429, 5xx or
	// connection error; NotAccepted the messages ingest never accepted.
	Submissions int `json:"submissions"`
	Retries     int `json:"retries"`
	NotAccepted int `json:"notAccepted"`
	// Accepted messages (distinct messageIds) and how they ended.
	Accepted     int `json:"accepted"`
	Delivered    int `json:"delivered"`
	Rejected     int `json:"rejected"`
	DeadLettered int `json:"deadLettered"`
	// Duplicates counts deliveries beyond the first at the inboxes (allowed:
	// delivery is at-least-once).
	Duplicates int `json:"duplicates"`
	// Lost: accepted but not terminal within the drain timeout, or DELIVERED but
	// never arrived. Unexpected: terminal in another status than the agent's
	// (DEAD_LETTERED for a reachable inbox). Corrupted: payload changed on the way.
	// IDMismatches: a submission answered with another messageId than DESIGN §2
	// derives.
	Lost int `json:"lost"`
	// Stuck: the part of Lost the router shows PENDING at the end of the drain.
	Stuck        int `json:"stuck"`
	Unexpected   int `json:"unexpected"`
	Corrupted    int `json:"corrupted"`
	IDMismatches int `json:"idMismatches"`
	// Keyed counts the accepted messages with an ordering key; OutOfOrder the
	// first arrivals of keyed messages after a later message of their key
	// (DESIGN §5a; ordered.go).
	Keyed      int `json:"keyed"`
	OutOfOrder int `json:"outOfOrder"`
	// RecoverSeconds runs from the end of the fault (the end of the load without
	// one) until every message accepted before then is terminal (-1: some never
	// were). MaxLatencySeconds is the longest time from a 202 to a terminal status.
	RecoverSeconds    float64 `json:"recoverSeconds"`
	MaxLatencySeconds float64 `json:"maxLatencySeconds"`
	// Slowest describes the messages that ended last.
	Slowest  []string `json:"slowest,omitempty"`
	Passed   bool     `json:"passed"`
	Problems []string `json:"problems,omitempty"`
}

func (r Result) done() Result {
	r.Passed = r.Lost == 0 && r.Unexpected == 0 && r.Corrupted == 0 && r.IDMismatches == 0 && r.OutOfOrder == 0 && len(r.Problems) == 0
	return r
}

// Report is a whole run.
type Report struct {
	Passed   bool     `json:"passed"`
	Short    bool     `json:"short"`
	Messages int      `json:"messagesPerScenario"`
	Elapsed  string   `json:"elapsed"`
	Results  []Result `json:"results"`
	// Teardown lists what went wrong stopping the system (a non-zero exit after
	// SIGTERM is a failed graceful shutdown, DESIGN §8.4).
	Teardown []string `json:"teardown,omitempty"`
	Dir      string   `json:"dir"`
	Kept     bool     `json:"kept"`
	Logs     []string `json:"logs"`
	// Verbose makes WriteTable describe every scenario, not only failed ones.
	Verbose bool `json:"-"`
}

// WriteTable renders the report for people.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\taccepted\tdelivered\trejected\tdead\tduplicates\tlost\tstuck\tkeyed\tout of order\tretries\trecover\tmax latency\tresult\t")
	for _, x := range r.Results {
		result := "PASS"
		switch {
		case x.Skipped:
			result = "SKIP"
		case !x.Passed:
			result = "FAIL"
		}
		recover := fmt.Sprintf("%.1fs", x.RecoverSeconds)
		if x.RecoverSeconds < 0 {
			recover = "never"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%.1fs\t%s\t\n", x.Scenario, x.Accepted, x.Delivered,
			x.Rejected, x.DeadLettered, x.Duplicates, x.Lost, x.Stuck, x.Keyed, x.OutOfOrder, x.Retries, recover, x.MaxLatencySeconds, result)
	}
	tw.Flush()
	for _, x := range r.Results {
		if len(x.Problems) == 0 && !r.Verbose {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s):\n", x.Scenario, x.Fault)
		for _, p := range x.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
		for _, p := range x.Slowest {
			fmt.Fprintf(w, "  ended last: %s\n", p)
		}
	}
	for _, p := range r.Teardown {
		fmt.Fprintf(w, "teardown: %s\n", p)
	}
	verdict := "PASSED"
	if !r.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "\nchaos %s in %s (%d messages per scenario%s)\n", verdict, r.Elapsed, r.Messages, map[bool]string{true: ", short mode"}[r.Short])
	if r.Kept {
		fmt.Fprintf(w, "logs: %s\n", strings.Join(r.Logs, " "))
	}
}
