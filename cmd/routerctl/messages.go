package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/msgrouter/msgrouter/internal/apiclient"
)

func cmdStatus(a *app, fs *pflag.FlagSet) runFunc {
	return func(ctx context.Context, args []string) error {
		m, err := a.api().GetMessage(ctx, args[0])
		if err != nil {
			return err
		}
		if a.g.json {
			return a.printJSON(m)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		status := m.Status
		if m.Reason != "" {
			status += " (" + m.Reason + ")"
		}
		dest := "-"
		if m.Destination != nil {
			dest = m.Destination.Type + " " + m.Destination.Name
		}
		for _, row := range [][2]string{
			{"messageId", m.MessageID},
			{"agent", m.AIAgentAddress},
			{"status", status},
			{"destination", dest},
			{"attempts", strconv.Itoa(m.Attempts)},
			{"lastError", orDash(m.LastError)},
			{"receivedAt", fmtTime(m.ReceivedAt)},
			{"deliveredAt", fmtTime(m.DeliveredAt)},
		} {
			fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(m.History) == 0 {
			fmt.Fprintln(a.stdout, "\nhistory: no delivery attempts")
			return nil
		}
		fmt.Fprintln(a.stdout, "\nhistory:")
		tw = tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ATTEMPT\tAT\tOUTCOME\tDURATION\tERROR")
		for _, h := range m.History {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%.1fms\t%s\n", h.Attempt, fmtTime(h.At), h.Outcome, h.DurationMs, orDash(h.Error))
		}
		return tw.Flush()
	}
}

type listFlags struct {
	status, agent, cursor string
	limit                 int
	all                   bool
}

func (l *listFlags) register(fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
	BoolVar(*bool, string, bool, string)
}, withStatus bool) {
	if withStatus {
		fs.StringVar(&l.status, "status", "", "only this status: PENDING, DELIVERED, REJECTED, DEAD_LETTERED")
	}
	fs.StringVar(&l.agent, "agent", "", "only messages to this agent address")
	fs.IntVar(&l.limit, "limit", 100, "page size (1..1000); with --all, how many per request")
	fs.StringVar(&l.cursor, "cursor", "", "continue from this cursor (printed after a page)")
	fs.BoolVar(&l.all, "all", false, "follow the cursors and list every match")
}

func (l *listFlags) validate() error {
	if l.limit < 1 || l.limit > 1000 {
		return usagef("--limit must be between 1 and 1000")
	}
	return nil
}

// listMessages fetches one page, or every page with --all.
func (a *app) listMessages(ctx context.Context, l *listFlags, status string) (*apiclient.MessagePage, error) {
	q := apiclient.MessageQuery{Status: status, AIAgentAddress: l.agent, Limit: l.limit, Cursor: l.cursor}
	out := &apiclient.MessagePage{Items: []apiclient.Message{}}
	for {
		p, err := a.api().ListMessages(ctx, q)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, p.Items...)
		out.NextCursor = p.NextCursor
		if !l.all || p.NextCursor == "" || p.NextCursor == q.Cursor {
			return out, nil
		}
		q.Cursor = p.NextCursor
	}
}

func (a *app) printMessages(p *apiclient.MessagePage) error {
	if a.g.json {
		return a.printJSON(p)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MESSAGE ID\tSTATUS\tREASON\tAGENT\tATTEMPTS\tRECEIVED")
	for _, m := range p.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", m.MessageID, m.Status, orDash(m.Reason), m.AIAgentAddress, m.Attempts, fmtTime(m.ReceivedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.NextCursor != "" {
		fmt.Fprintf(a.stderr, "more: --cursor %s (or --all)\n", p.NextCursor)
	}
	return nil
}

func cmdList(a *app, fs *pflag.FlagSet) runFunc {
	var l listFlags
	l.register(fs, true)
	return func(ctx context.Context, args []string) error {
		if err := l.validate(); err != nil {
			return err
		}
		p, err := a.listMessages(ctx, &l, strings.ToUpper(l.status))
		if err != nil {
			return err
		}
		return a.printMessages(p)
	}
}

func cmdDeadLetters(a *app, fs *pflag.FlagSet) runFunc {
	var l listFlags
	l.register(fs, false)
	reason := fs.String("reason", "", "only this reason (e.g. MAX_ATTEMPTS_EXCEEDED, AGENT_NOT_FOUND)")
	return func(ctx context.Context, args []string) error {
		if err := l.validate(); err != nil {
			return err
		}
		if l.cursor != "" {
			return usagef("--cursor does not apply to dead-letters (two statuses are merged): use --all")
		}
		out := &apiclient.MessagePage{Items: []apiclient.Message{}}
		for _, st := range []string{apiclient.StatusDeadLettered, apiclient.StatusRejected} {
			p, err := a.listMessages(ctx, &l, st)
			if err != nil {
				return err
			}
			out.Items = append(out.Items, p.Items...)
		}
		if *reason != "" {
			out.Items = slices.DeleteFunc(out.Items, func(m apiclient.Message) bool { return !strings.EqualFold(m.Reason, *reason) })
		}
		slices.SortStableFunc(out.Items, func(x, y apiclient.Message) int {
			return cmp.Compare(unixOf(y.ReceivedAt), unixOf(x.ReceivedAt))
		})
		if !l.all && len(out.Items) > l.limit {
			out.Items = out.Items[:l.limit]
		}
		return a.printMessages(out)
	}
}

func unixOf(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.UnixNano()
}

func cmdReplay(a *app, fs *pflag.FlagSet) runFunc {
	all := fs.Bool("all", false, "replay every dead letter matching the filters (POST /v1/dead-letters/replay)")
	status := fs.String("status", "", "with --all: DEAD_LETTERED or REJECTED (default both)")
	agent := fs.String("agent", "", "with --all: only this agent address")
	reason := fs.String("reason", "", "with --all: only this reason")
	since := fs.String("since", "", "with --all: reached that status at or after `T` (RFC 3339, or a duration like 2h meaning that long ago)")
	fromStdin := fs.Bool("stdin", false, "read messageIds from stdin")
	conc := fs.Int("concurrency", 8, "replays in flight when replaying many ids")
	return func(ctx context.Context, args []string) error {
		if *all {
			if len(args) > 0 || *fromStdin {
				return usagef("--all replays by filter: give no messageIds")
			}
			f := apiclient.ReplayFilter{Status: strings.ToUpper(*status), AIAgentAddress: *agent, Reason: strings.ToUpper(*reason)}
			if *since != "" {
				t, err := parseSince(*since, time.Now())
				if err != nil {
					return err
				}
				f.Since = &t
			}
			n, err := a.api().ReplayDeadLetters(ctx, f)
			if err != nil {
				return err
			}
			if a.g.json {
				return a.printJSON(map[string]int{"replayed": n})
			}
			fmt.Fprintf(a.stdout, "replayed %d\n", n)
			return nil
		}
		if *status != "" || *agent != "" || *reason != "" || *since != "" {
			return usagef("--status, --agent, --reason and --since need --all")
		}
		if *conc < 1 {
			return usagef("--concurrency must be at least 1")
		}
		if i := slices.Index(args, "-"); i >= 0 {
			*fromStdin = true
			args = slices.Delete(args, i, i+1)
		}
		ids := args
		if *fromStdin {
			more, err := readIDs(a.stdin)
			if err != nil {
				return fmt.Errorf("error reading messageIds from stdin: %w", err)
			}
			ids = append(ids, more...)
		}
		if len(ids) == 0 {
			return usagef("give messageIds, \"-\" to read them from stdin, or --all")
		}
		return a.replayIDs(ctx, ids, *conc)
	}
}

// parseSince reads an RFC 3339 time or a duration ago.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UTC(), nil
	}
	return time.Time{}, usagef("--since: %q is neither an RFC 3339 time nor a duration", s)
}

// readIDs reads whitespace-separated ids; blank lines and # comments are skipped.
func readIDs(r io.Reader) ([]string, error) {
	var ids []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ids = append(ids, strings.Fields(line)...)
	}
	return ids, sc.Err()
}

type replayFailure struct {
	MessageID string `json:"messageId"`
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

func (a *app) replayIDs(ctx context.Context, ids []string, conc int) error {
	bar := newProgressBar(a.stderr, len(ids), len(ids) > 1 && a.terminal(a.stderr))
	var mu sync.Mutex
	var failures []replayFailure
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range min(conc, len(ids)) {
		wg.Go(func() {
			for id := range jobs {
				err := a.api().Replay(ctx, id)
				mu.Lock()
				if err != nil {
					f := replayFailure{MessageID: id, ErrorCode: "ERROR", Message: err.Error()}
					var apiErr *apiclient.Error
					if errors.As(err, &apiErr) {
						f.ErrorCode, f.Message = apiErr.Code, apiErr.Message
					}
					failures = append(failures, f)
					bar.clear()
					fmt.Fprintf(a.stderr, "error: %s: %s: %s\n", id, f.ErrorCode, f.Message)
				}
				bar.step(err != nil)
				mu.Unlock()
			}
		})
	}
feed:
	for _, id := range ids {
		select {
		case jobs <- id:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	bar.done()
	replayed := bar.n - len(failures)
	if a.g.json {
		if failures == nil {
			failures = []replayFailure{}
		}
		if err := a.printJSON(map[string]any{"requested": len(ids), "replayed": replayed, "failed": failures}); err != nil {
			return err
		}
	} else if len(ids) == 1 && len(failures) == 0 {
		fmt.Fprintf(a.stdout, "replayed %s\n", ids[0])
	} else {
		fmt.Fprintf(a.stdout, "replayed %d of %d (%d failed)\n", replayed, len(ids), len(failures))
	}
	if len(failures) > 0 || bar.n < len(ids) {
		return errReported
	}
	return nil
}

// progressBar draws "[#####.....] n/total" on a terminal, at most ten times a
// second; it does nothing when off. Callers serialise calls.
type progressBar struct {
	w        io.Writer
	on       bool
	n, total int
	failed   int
	last     time.Time
}

func newProgressBar(w io.Writer, total int, on bool) *progressBar {
	return &progressBar{w: w, total: total, on: on}
}

func (p *progressBar) step(failed bool) {
	p.n++
	if failed {
		p.failed++
	}
	if p.on && (p.n == p.total || time.Since(p.last) >= 100*time.Millisecond) {
		p.draw()
	}
}

func (p *progressBar) draw() {
	const width = 30
	filled := width * p.n / max(p.total, 1)
	fmt.Fprintf(p.w, "\rreplaying [%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.n, p.total)
	if p.failed > 0 {
		fmt.Fprintf(p.w, " (%d failed)", p.failed)
	}
	p.last = time.Now()
}

// clear erases the bar so an error line prints cleanly; the next step redraws it.
func (p *progressBar) clear() {
	if p.on && !p.last.IsZero() {
		fmt.Fprint(p.w, "\r\033[K")
		p.last = time.Time{}
	}
}

func (p *progressBar) done() {
	if p.on {
		p.draw()
		fmt.Fprintln(p.w)
	}
}

func cmdSend(a *app, fs *pflag.FlagSet) runFunc {
	agent := fs.String("agent", "", "agent `address` (required)")
	payload := fs.String("payload", "", "payload JSON object, @file to read a file, - for stdin (required)")
	service := fs.String("service", "", "senderMetadata.serviceName")
	corr := fs.String("correlation-id", "", "senderMetadata.correlationId")
	spid := fs.String("sender-message-id", "", "senderMetadata.senderProvidedMessageId (makes the messageId idempotent)")
	wait := fs.Bool("wait", false, "wait until the message is DELIVERED, REJECTED or DEAD_LETTERED")
	waitTimeout := fs.Duration("wait-timeout", 30*time.Second, "how long --wait waits")
	poll := fs.Duration("poll", 200*time.Millisecond, "how often --wait polls")
	count := fs.Int("count", 1, "how many copies to submit")
	batch := fs.Int("batch", 0, "submit in batches of this many (1 to 1000) through POST /v1/messages/batch; 0 = one request each")
	return func(ctx context.Context, args []string) error {
		if *agent == "" || *payload == "" {
			return usagef("send needs --agent and --payload")
		}
		body, err := a.readPayload(*payload)
		if err != nil {
			return err
		}
		switch {
		case *count < 1:
			return usagef("--count must be at least 1")
		case *batch < 0 || *batch > 1000:
			return usagef("--batch must be from 1 to 1000 (0: no batches)")
		case *wait && (*count > 1 || *batch > 0):
			return usagef("--wait sends one message: it does not go with --count or --batch")
		}
		newEnv := func(i int) *apiclient.Envelope {
			env := &apiclient.Envelope{AIAgentAddress: *agent, Payload: body}
			if *service != "" || *corr != "" || *spid != "" {
				env.SenderMetadata = &apiclient.SenderMetadata{ServiceName: *service, CorrelationID: *corr, SenderProvidedMessageID: *spid}
				if *spid != "" && *count > 1 {
					env.SenderMetadata.SenderProvidedMessageID = *spid + "-" + strconv.Itoa(i+1)
				}
			}
			return env
		}
		if *count > 1 || *batch > 0 {
			return a.sendMany(ctx, *count, *batch, newEnv)
		}
		env := newEnv(0)
		id, err := a.api().Send(ctx, env)
		if err != nil {
			return err
		}
		if !*wait {
			if a.g.json {
				return a.printJSON(map[string]string{"messageId": id})
			}
			fmt.Fprintln(a.stdout, id)
			return nil
		}
		if !a.g.json {
			fmt.Fprintln(a.stdout, id)
		}
		m, err := a.waitTerminal(ctx, id, *waitTimeout, max(*poll, 10*time.Millisecond))
		if err != nil {
			return err
		}
		if a.g.json {
			if err := a.printJSON(map[string]any{"messageId": id, "status": m.Status, "message": m}); err != nil {
				return err
			}
		} else {
			line := m.Status
			if m.Reason != "" {
				line += " " + m.Reason
			}
			if m.LastError != "" {
				line += ": " + m.LastError
			}
			fmt.Fprintln(a.stdout, line)
		}
		if m.Status != apiclient.StatusDelivered {
			return errReported
		}
		return nil
	}
}

// sendMany submits count messages, one request each or in batches of batch, and
// prints one line per message in order: its messageId, or "error CODE: message".
func (a *app) sendMany(ctx context.Context, count, batch int, newEnv func(i int) *apiclient.Envelope) error {
	results := make([]apiclient.BatchResult, 0, count)
	api := a.api()
	for start := 0; start < count; {
		n := 1
		if batch > 0 {
			n = min(batch, count-start)
		}
		envs := make([]*apiclient.Envelope, n)
		for i := range envs {
			envs[i] = newEnv(start + i)
		}
		if batch > 0 {
			res, err := api.SendBatch(ctx, envs)
			if err != nil {
				return err
			}
			results = append(results, res...)
		} else {
			id, err := api.Send(ctx, envs[0])
			var apiErr *apiclient.Error
			switch {
			case err == nil:
				results = append(results, apiclient.BatchResult{MessageID: id})
			case errors.As(err, &apiErr):
				results = append(results, apiclient.BatchResult{ErrorCode: apiErr.Code, Message: apiErr.Message})
			default:
				return err
			}
		}
		start += n
	}
	failed := 0
	for _, r := range results {
		if r.ErrorCode != "" {
			failed++
		}
	}
	if a.g.json {
		if err := a.printJSON(map[string]any{"results": results}); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			if r.ErrorCode != "" {
				fmt.Fprintf(a.stdout, "error %s: %s\n", r.ErrorCode, r.Message)
			} else {
				fmt.Fprintln(a.stdout, r.MessageID)
			}
		}
	}
	if failed > 0 {
		fmt.Fprintf(a.stderr, "%d of %d messages were refused\n", failed, len(results))
		return errReported
	}
	return nil
}

func (a *app) readPayload(arg string) (json.RawMessage, error) {
	var b []byte
	var err error
	switch {
	case arg == "-":
		b, err = io.ReadAll(a.stdin)
	case strings.HasPrefix(arg, "@"):
		b, err = os.ReadFile(arg[1:])
	default:
		b = []byte(arg)
	}
	if err != nil {
		return nil, fmt.Errorf("error reading the payload: %w", err)
	}
	b = []byte(strings.TrimSpace(string(b)))
	var obj map[string]json.RawMessage
	if !json.Valid(b) || json.Unmarshal(b, &obj) != nil || obj == nil {
		return nil, usagef("--payload must be a JSON object, like '{\"k\":1}'")
	}
	return b, nil
}

// waitTerminal polls the router until the message is terminal. A 404 means the
// router has not taken it over yet: keep polling.
func (a *app) waitTerminal(ctx context.Context, id string, timeout, every time.Duration) (*apiclient.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(every)
	defer t.Stop()
	last := "not seen by the router yet"
	for {
		m, err := a.api().GetMessage(ctx, id)
		switch {
		case err == nil && apiclient.Terminal(m.Status):
			return m, nil
		case err == nil:
			last = m.Status
		case apiclient.IsNotFound(err):
		case ctx.Err() == nil:
			return nil, err
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, fmt.Errorf("message %s is not terminal after %s (last status: %s)", id, timeout, last)
		}
	}
}
