package bench

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/msgrouter/msgrouter/internal/stream"
)

// Stages of issue 11: the pipeline measured one part at a time.
const (
	// StageAll is the whole pipeline under load: HTTP ingest (or JetStream
	// producers) → router → inbox, as `routerctl bench` always measured.
	StageAll = "all"
	// StageIngest measures HTTP → JetStream → 202 only: no inbox, no agents, no
	// router expected (messages stay in ROUTER_MESSAGES). Its figures are per
	// accepted message.
	StageIngest = "ingest"
	// StageDrain preloads Count messages straight into ROUTER_MESSAGES with
	// JetStream async publish while no router runs, then starts the router
	// (StartRouter) and times the drain of that backlog to the inboxes: the
	// recovery a router meets after a CAMS outage, a restart or a burst.
	StageDrain = "drain"
)

// Stage defaults.
const (
	// DefaultDrainCount is the backlog of the drain stage (issue 11: ≥ 100,000).
	DefaultDrainCount = 100_000
	// DefaultPreloadInFlight is the async-publish window of the drain preload.
	DefaultPreloadInFlight = 4096
	// DefaultDrainStageTimeout bounds the drain stage's wait for the backlog.
	DefaultDrainStageTimeout = 5 * time.Minute
	// MaxBatch is the largest batch POST /v1/messages/batch takes (DESIGN §2).
	MaxBatch = 1000
)

// StartRouterFunc starts the router(s) of the drain stage once the backlog is in
// place. It returns the PIDs to charge as "router" in the CPU budget (none when the
// router runs elsewhere) and stop, which ends them and waits; stop is called once,
// after the drain.
type StartRouterFunc func(ctx context.Context) (pids []int, stop func() error, err error)

// StageConfig holds the stage-related fields of Config.
type StageConfig struct {
	// Stage is StageAll (default), StageIngest or StageDrain.
	Stage string
	// Batch > 1 sends messages in batches of Batch through POST /v1/messages/batch
	// (--mode http only); Clients is then the number of batches in flight.
	Batch int
	// StartRouter is required by StageDrain.
	StartRouter StartRouterFunc
	// PreloadInFlight is the drain stage's publish window. Defaults to 4096.
	PreloadInFlight int
	// RouterMetricsURL, when set, is the router's Prometheus endpoint: the drain
	// stage reads the outbox counters there once the backlog has arrived, before it
	// stops the router (RouterCounters in the result).
	RouterMetricsURL string
	// CPU lists the processes whose CPU time the run reports per message, besides
	// the load tool itself and the routers StartRouter started. Nil takes
	// DefaultCPUProcesses.
	CPU []CPUProcess
}

func (c Config) stageDefaults() Config {
	c.Stage = cmp.Or(c.Stage, StageAll)
	if c.Stage == StageDrain {
		c.Mode = ModeNATS
		c.Count = cmp.Or(c.Count, DefaultDrainCount)
		c.Duration, c.Warmup = 0, 0
		c.PreloadInFlight = cmp.Or(c.PreloadInFlight, DefaultPreloadInFlight)
		c.Clients = c.PreloadInFlight
		c.DrainTimeout = cmp.Or(c.DrainTimeout, DefaultDrainStageTimeout)
	}
	return c
}

func (c Config) validateStage() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case c.Stage != StageAll && c.Stage != StageIngest && c.Stage != StageDrain:
		return bad("stage must be all, ingest or drain, not %q", c.Stage)
	case c.Batch < 0 || c.Batch > MaxBatch:
		return bad("batch must be between 0 and %d", MaxBatch)
	case c.Batch > 1 && c.Mode != ModeHTTP:
		return bad("batch needs --mode http (POST /v1/messages/batch)")
	case c.Stage == StageDrain && c.StartRouter == nil:
		return bad("the drain stage needs a way to start the router after the preload (--router-cmd)")
	case c.Stage == StageDrain && c.Rate > 0:
		return bad("the drain stage preloads as fast as it can: no --rate")
	case c.Stage == StageIngest && c.Mode != ModeHTTP:
		return bad("the ingest stage measures HTTP ingest: --mode http")
	}
	return nil
}

// stageState is what a run records for its stage.
type stageState struct {
	procs         []CPUProcess
	cpuStart      cpuSample
	cpuStartAt    time.Time
	cpuEnd        cpuSample
	cpuEndAt      time.Time
	routerStartAt time.Time
	counters      map[string]float64
}

// drainCounters are the router's series a drain reports: every claim of an outbox
// row, every row put back without an attempt (lane_full, lane_congested: a queue in
// memory was full or stuck — issue 11 wants none of those in a drain), how long
// intake waited for room in lanes (backpressure) and how often a lane congested,
// missed pull heartbeats, and every connection dialled to an HTTP inbox (keep-alive
// at work: far fewer than deliveries).
var drainCounters = []string{"msgrouter_outbox_claimed_total", "msgrouter_outbox_waits_total",
	"msgrouter_outbox_lane_wait_seconds_count", "msgrouter_outbox_lane_wait_seconds_sum",
	"msgrouter_outbox_lane_congestions_total", "msgrouter_consumer_missed_heartbeats_total",
	"msgrouter_delivery_http_dials_total"}

// scrapeCounters reads the Prometheus text format at url and returns the series of
// the given metric names ("name{labels}" → value). Errors leave the map empty: the
// counters are a diagnosis, not the measurement.
func scrapeCounters(ctx context.Context, url string, names []string) map[string]float64 {
	out := map[string]float64{}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return out
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, n := range names {
			if !strings.HasPrefix(line, n) {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			if i < 0 {
				continue
			}
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				out[line[:i]] = v
			}
		}
	}
	return out
}

func (r *run) ensureRouterStream(ctx context.Context) error {
	if _, err := stream.Ensure(ctx, r.js); err != nil {
		return fmt.Errorf("preparing the drain preload: %w", err)
	}
	return nil
}

// startCPUWindow takes the budget's first sample when measuring starts (after the
// warmup) for the all and ingest stages; the returned channel closes once it is
// taken. The drain stage samples just before it starts the router instead.
func (r *run) startCPUWindow() <-chan struct{} {
	r.stage.procs = append([]CPUProcess(nil), r.cfg.CPU...)
	if r.cfg.CPU == nil {
		r.stage.procs = DefaultCPUProcesses()
	}
	r.stage.procs = append(r.stage.procs, CPUProcess{Name: "load tool (routerctl)", PID: os.Getpid()})
	done := make(chan struct{})
	if r.cfg.Stage == StageDrain {
		close(done)
		return done
	}
	take := func() {
		r.stage.cpuStart, r.stage.cpuStartAt = sampleCPU(r.stage.procs), time.Now()
		close(done)
	}
	wait := time.Until(r.measureStart)
	if wait <= 0 {
		take()
		return done
	}
	go func() {
		time.Sleep(wait)
		take()
	}()
	return done
}

func (r *run) endCPUWindow() {
	r.stage.cpuEnd, r.stage.cpuEndAt = sampleCPU(r.stage.procs), time.Now()
}

// afterLoad finishes the stage once the load is sent and answered.
func (r *run) afterLoad(ctx context.Context, cpuStarted <-chan struct{}, onCleanup func(func(context.Context) error)) error {
	switch r.cfg.Stage {
	case StageIngest:
		<-cpuStarted
		r.endCPUWindow()
		return nil
	case StageAll:
		r.drain(ctx)
		<-cpuStarted
		r.endCPUWindow()
		return nil
	}
	// Drain: the backlog is in ROUTER_MESSAGES; start the router and time it.
	r.stage.cpuStart = sampleCPU(r.stage.procs)
	r.stage.cpuStartAt = time.Now()
	r.stage.routerStartAt = r.stage.cpuStartAt
	pids, stop, err := r.cfg.StartRouter(ctx)
	if err != nil {
		return fmt.Errorf("error starting the router for the drain: %w", err)
	}
	var once bool
	stopOnce := func() error {
		if once {
			return nil
		}
		once = true
		return stop()
	}
	onCleanup(func(context.Context) error { return stopOnce() })
	for _, pid := range pids {
		r.stage.procs = append(r.stage.procs, CPUProcess{Name: "router", PID: pid})
	}
	r.drain(ctx)
	r.endCPUWindow()
	if r.cfg.RouterMetricsURL != "" {
		r.stage.counters = scrapeCounters(ctx, r.cfg.RouterMetricsURL, drainCounters)
	}
	if err := stopOnce(); err != nil {
		return fmt.Errorf("error stopping the router after the drain: %w", err)
	}
	return nil
}

// stageResult adds the stage's figures to res: the drain's timing and the CPU
// budget per message of the window (delivered messages; accepted ones for ingest).
func (r *run) stageResult(res *Result) {
	res.Stage, res.Batch = r.cfg.Stage, r.cfg.Batch
	var messages int64
	switch r.cfg.Stage {
	case StageIngest:
		// Nothing is meant to arrive: the router does not run.
		res.Missing, res.DeliveredPerSec = 0, 0
		res.Hints = nil
		if res.Sent > 0 && res.Accepted == 0 {
			res.Hints = r.hints(res)
		}
		messages = int64(res.Latency.SubmitToAccept.Count)
	case StageAll:
		messages = int64(res.Latency.AcceptToDelivery.Count)
	case StageDrain:
		messages = res.Delivered
		var first, last int64
		r.table.each(func(_ int64, e *entry) {
			if d := e.delivered.Load(); d != 0 {
				if first == 0 || d < first {
					first = d
				}
				last = max(last, d)
			}
		})
		res.RouterCounters = r.stage.counters
		if start := r.stage.routerStartAt; !start.IsZero() && last != 0 {
			res.Drain = &DrainResult{
				Backlog:              res.Accepted,
				FirstDeliverySeconds: time.Unix(0, first).Sub(start).Seconds(),
				DrainSeconds:         time.Unix(0, last).Sub(start).Seconds(),
			}
			if res.Drain.DrainSeconds > 0 {
				res.DeliveredPerSec = float64(res.Delivered) / res.Drain.DrainSeconds
			}
		}
	}
	if !r.stage.cpuEndAt.IsZero() && !r.stage.cpuStartAt.IsZero() {
		wall := r.stage.cpuEndAt.Sub(r.stage.cpuStartAt).Seconds()
		res.CPUWindowSeconds = wall
		res.CPUMessages = messages
		res.CPU = budget(r.stage.procs, r.stage.cpuStart, r.stage.cpuEnd, wall, messages)
	}
}

// DrainResult is the drain stage's timing, from the router's start.
type DrainResult struct {
	Backlog              int64   `json:"backlog"`
	FirstDeliverySeconds float64 `json:"firstDeliverySeconds"`
	DrainSeconds         float64 `json:"drainSeconds"` // router start → last delivery
}

// httpBatchSender sends up to Batch messages per POST /v1/messages/batch, each
// batch as soon as it is full or the generator is done.
func (r *run) httpBatchSender(ctx context.Context, jobs <-chan job) {
	batch := make([]job, 0, r.cfg.Batch)
	for j := range jobs {
		batch = append(batch[:0], j)
	fill:
		for len(batch) < r.cfg.Batch {
			select {
			case j, ok := <-jobs:
				if !ok {
					break fill
				}
				batch = append(batch, j)
			case <-ctx.Done():
				break fill
			}
		}
		if ctx.Err() != nil {
			continue
		}
		r.sendBatch(ctx, batch)
	}
}

var batchOpen, batchClose = []byte(`{"messages":[`), []byte(`]}`)

func (r *run) sendBatch(ctx context.Context, batch []job) {
	body := make([]byte, 0, len(batch)*(r.envelopeSize()+1)+16)
	body = append(body, batchOpen...)
	for i, j := range batch {
		if i > 0 {
			body = append(body, ',')
		}
		body = r.appendEnvelope(body, j.seq, r.stamp(j))
	}
	body = append(body, batchClose...)
	results, err := r.cfg.Client.SendBatchRaw(ctx, body, len(batch))
	now := time.Now().UnixNano()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		kind := httpErrorKind(err)
		for range batch {
			r.countError(kind)
		}
		return
	}
	for i, res := range results {
		if res.MessageID != "" && res.ErrorCode == "" {
			r.markAccepted(batch[i].e, now)
			continue
		}
		r.countError("batch_item_" + cmp.Or(res.ErrorCode, "no_id"))
	}
}
