// Package consumer runs the router's durable JetStream pull consumer: one reader
// pulls continuously, a bounded pool of workers takes the messages in batches to a
// Handler, and the consumer applies the Handler's verdict on each message (Ack,
// NakWithDelay, Term) only after the Handler returned, i.e. after the batch was
// committed. Batches that run long are kept alive with InProgress so they are not
// redelivered to another replica mid-flight.
package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Verdict is what to do with a message once its batch is handled.
type Verdict int

// The verdicts.
const (
	Ack  Verdict = iota // taken over durably: done
	Nak                 // not now: redeliver after Action.Delay
	Term                // never redeliver (recorded as poison)
	Skip                // leave it: redelivered after AckWait
)

// Action is a verdict on one message.
type Action struct {
	Verdict Verdict
	Delay   time.Duration
}

// Handler takes a batch over and returns one Action per message, in order. Work
// that must follow the verdicts (handing committed jobs on, which may wait) is
// registered with AfterAck.
type Handler func(ctx context.Context, msgs []jetstream.Msg) []Action

// afterAckKey carries a batch's *afterAck in the Handler's context.
type afterAckKey struct{}

type afterAck struct{ fns []func() }

// AfterAck registers f to run once the verdicts of the batch being handled with ctx
// have been sent to JetStream (acks included), on the same worker, before it takes
// its next batch. So an f that waits (the dispatcher's backpressure: a full lane)
// slows intake without holding acks back: the batch's messages leave JetStream's
// ack-pending count and AckWait at once, and MaxAckPending is not spent on them.
// Call it from the Handler's goroutine. With a ctx that does not come from a
// Consumer's Handler, f runs at once.
func AfterAck(ctx context.Context, f func()) {
	if a, ok := ctx.Value(afterAckKey{}).(*afterAck); ok {
		a.fns = append(a.fns, f)
		return
	}
	f()
}

// Config configures a Consumer.
type Config struct {
	Stream   jetstream.Stream
	Consumer jetstream.ConsumerConfig
	Handler  Handler
	// Workers is how many batches are handled at once. Defaults to 4.
	Workers int
	// BatchSize caps a batch. Defaults to 256.
	BatchSize int
	// BatchWait is how long a worker waits for a batch to fill after its first
	// message. Defaults to 2ms.
	BatchWait time.Duration
	// Paused reports whether to stop pulling (CAMS is down): messages stay in the
	// stream rather than being fetched only to be handed back.
	Paused func() bool
	// Recreate is called when the stream or the consumer is gone (deleted, or a
	// NATS server came back without its store): it must create the stream again
	// and return it; the consumer is then created again on it.
	Recreate   func(ctx context.Context) (jetstream.Stream, error)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Consumer is a running pull consumer.
type Consumer struct {
	cfg   Config
	log   *slog.Logger
	cons  jetstream.Consumer
	msgs  chan jetstream.Msg
	m     *metrics
	stop  context.CancelFunc
	wg    sync.WaitGroup
	once  sync.Once
	start sync.Once
	// handlerCtx is what handlers run with: it ends only when Stop gives up
	// waiting (its context ended), so a batch stuck on an unreachable Postgres is
	// cut short and shutdown stays bounded (DESIGN §8.4). A batch cut short is not
	// acked: JetStream redelivers it and the takeover, being idempotent, ignores
	// what was already committed.
	handlerCtx    context.Context
	cancelHandler context.CancelFunc
	iterM         sync.Mutex
	iter          jetstream.MessagesContext
}

// Defaults of Config (STYLE.md, convention 1).
const (
	WorkersDefault   = 4
	BatchSizeDefault = 256
	BatchWaitDefault = 2 * time.Millisecond
)

// withDefaults fills the zero values with their defaults.
func (c Config) withDefaults() Config {
	c.Workers = cmp.Or(c.Workers, WorkersDefault)
	c.BatchSize = cmp.Or(c.BatchSize, BatchSizeDefault)
	c.BatchWait = cmp.Or(c.BatchWait, BatchWaitDefault)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Paused == nil {
		c.Paused = func() bool { return false }
	}
	return c
}

// validate returns one error naming the first field that cannot work.
func (c Config) validate() error {
	switch {
	case c.Stream == nil:
		return errors.New("consumer: Stream is required")
	case c.Handler == nil:
		return errors.New("consumer: Handler is required")
	case c.Workers < 0, c.BatchSize < 0, c.BatchWait < 0:
		return fmt.Errorf("consumer: Workers (%d), BatchSize (%d) and BatchWait (%s) must not be negative",
			c.Workers, c.BatchSize, c.BatchWait)
	}
	return nil
}

// New creates or updates the durable consumer. It returns an error for an
// invalid cfg (validate) or when the server refuses the consumer.
func New(ctx context.Context, cfg Config) (*Consumer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cons, err := cfg.Stream.CreateOrUpdateConsumer(ctx, cfg.Consumer)
	if err != nil {
		return nil, fmt.Errorf("error creating consumer %s: %w", cfg.Consumer.Durable, err)
	}
	c := &Consumer{
		cfg:  cfg,
		log:  cfg.Logger,
		cons: cons,
		msgs: make(chan jetstream.Msg, cfg.BatchSize),
	}
	c.m = newMetrics(cfg.Registerer, c.Info)
	return c, nil
}

// Info returns the consumer's state on the server (pending, ack-pending).
func (c *Consumer) Info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	c.iterM.Lock()
	cons := c.cons
	c.iterM.Unlock()
	return cons.Info(ctx)
}

// Start launches the reader and the workers. Idempotent: only the first call
// starts anything.
func (c *Consumer) Start(ctx context.Context) error {
	c.start.Do(func() { c.run(ctx) })
	return nil
}

func (c *Consumer) run(ctx context.Context) {
	c.handlerCtx, c.cancelHandler = context.WithCancel(context.WithoutCancel(ctx))
	ctx, c.stop = context.WithCancel(context.WithoutCancel(ctx))
	c.wg.Add(1)
	go c.read(ctx)
	var workers sync.WaitGroup
	for range c.cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			c.work(ctx)
		}()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		workers.Wait()
	}()
}

// Stop stops pulling, lets the batches being handled finish (their acks are sent),
// hands back what was pulled but not started (Nak: another replica takes it at
// once, instead of after AckWait), and returns. ctx bounds the wait (DESIGN
// §8.4): when it ends, the handlers' context is cancelled (a batch stuck on an
// unreachable Postgres gives up and is not acked, so JetStream redelivers it) and
// Stop returns an error wrapping ctx.Err() at once; the goroutines end as soon as
// their calls return. Idempotent.
func (c *Consumer) Stop(ctx context.Context) error {
	var err error
	c.once.Do(func() {
		c.start.Do(func() {}) // a later Start does nothing
		if c.stop == nil {
			return
		}
		c.stop()
		c.iterM.Lock()
		if c.iter != nil {
			c.iter.Drain() // wakes the reader; it hands back the buffered messages
		}
		c.iterM.Unlock()
		done := make(chan struct{})
		go func() { c.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			c.cancelHandler()
			err = fmt.Errorf("consumer did not stop in time (unfinished batches are redelivered): %w", ctx.Err())
		}
		c.cancelHandler()
	})
	return err
}

// recreate makes the stream and the durable consumer again after they vanished.
func (c *Consumer) recreate(ctx context.Context) error {
	st := c.cfg.Stream
	if c.cfg.Recreate != nil {
		var err error
		if st, err = c.cfg.Recreate(ctx); err != nil {
			return err
		}
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, c.cfg.Consumer)
	if err != nil {
		return fmt.Errorf("error creating consumer %s again: %w", c.cfg.Consumer.Durable, err)
	}
	c.log.WarnContext(ctx, "the stream or consumer was gone; created them again", slog.String("consumer", c.cfg.Consumer.Durable))
	c.iterM.Lock()
	c.cons = cons
	c.iterM.Unlock()
	return nil
}

// read pulls continuously and feeds the workers. It recreates the pull when the
// iterator fails (missed heartbeats after a reconnect or a leader change: stalled
// consumers are a known failure mode).
func (c *Consumer) read(ctx context.Context) {
	defer c.wg.Done()
	defer close(c.msgs)
	for ctx.Err() == nil {
		c.iterM.Lock()
		cons := c.cons
		c.iterM.Unlock()
		// Heartbeat 1s (nats.go's default is half the expiry, 2.5s): a pull that
		// stalls — seen in drains under load, where JetStream stopped delivering
		// until the client asked again — is noticed after 2s of silence in Next and
		// answered with a new pull request on the same iterator (see pull), which
		// costs nothing when the silence was a false alarm.
		it, err := cons.Messages(jetstream.PullMaxMessages(2*c.cfg.BatchSize), jetstream.PullExpiry(5*time.Second),
			jetstream.PullHeartbeat(pullHeartbeat))
		if err != nil {
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
				if err = c.recreate(ctx); err == nil {
					continue
				}
			}
			c.log.WarnContext(ctx, "error starting to pull, retrying", slog.Any("error", err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		c.iterM.Lock()
		c.iter = it
		c.iterM.Unlock()
		if ctx.Err() != nil {
			it.Drain()
		}
		if err := c.pull(ctx, it); err != nil {
			// The pull failed: if the consumer (or its stream) is gone, make them
			// again; otherwise a new pull is enough.
			if _, ierr := cons.Info(ctx); errors.Is(ierr, jetstream.ErrConsumerNotFound) || errors.Is(ierr, jetstream.ErrStreamNotFound) {
				if rerr := c.recreate(ctx); rerr != nil {
					c.log.WarnContext(ctx, "error creating the consumer again, retrying", slog.Any("error", rerr))
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
			}
		}
	}
}

// pull forwards messages from one iterator until it fails or ctx ends. While the
// consumer is paused it simply stops asking: the iterator's buffer is full, so it
// stops pulling too, and the messages it holds go on at once when the pause ends
// (or come back from JetStream after AckWait if the pause outlasts it; the takeover
// recognises a redelivery). On stop it drains the iterator and hands back what it
// had buffered, instead of leaving it to AckWait.
func (c *Consumer) pull(ctx context.Context, it jetstream.MessagesContext) error {
	draining := false
	missed := 0 // heartbeats missed in a row
	for {
		if !draining && !c.waitWhilePaused(ctx) {
			draining = true
			it.Drain()
		}
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			if missed++; errors.Is(err, jetstream.ErrNoHeartbeat) && missed < maxMissedHeartbeats {
				// Nothing arrived for two heartbeat intervals while waiting in Next
				// (a busy server or machine, a lost pull request after a leader
				// change). nats.go has reset its pending count, so the next Next
				// sends a fresh pull request: the iterator stays, and so do the
				// messages it has buffered. Stopping it at once, as before, left
				// those (up to 2×BatchSize) to come back after AckWait: an intake
				// stall seen in drains (issue 11). A handler that waits
				// (backpressure) is not a cause: nats.go's heartbeat timer only
				// runs inside Next. Should new pull requests not help either, the
				// iterator is recreated after maxMissedHeartbeats (FIELD-NOTES:
				// stalled consumers).
				c.m.missedHeartbeats.Inc()
				c.log.InfoContext(ctx, "pull heartbeat missed, pulling again", slog.Any("error", err))
				continue
			}
			c.log.WarnContext(ctx, "pull failed, recreating it", slog.Any("error", err))
			it.Stop()
			return err
		}
		missed = 0
		if !draining && ctx.Err() != nil {
			draining = true
			it.Drain()
		}
		if draining {
			_ = msg.Nak()
			c.m.verdicts.WithLabelValues("handed_back").Inc()
			continue
		}
		select {
		case c.msgs <- msg:
		case <-ctx.Done():
			_ = msg.Nak()
			c.m.verdicts.WithLabelValues("handed_back").Inc()
			draining = true
			it.Drain()
		}
	}
}

// maxMissedHeartbeats is how many pull heartbeats in a row pull answers with a new
// pull request on the same iterator before it recreates the iterator.
const maxMissedHeartbeats = 3

// pullHeartbeat is the idle heartbeat asked of JetStream for each pull request; two
// missed ones (nothing at all for 2×pullHeartbeat) count as a stalled pull.
const pullHeartbeat = time.Second

// waitWhilePaused blocks while the consumer is paused; false when ctx ended.
func (c *Consumer) waitWhilePaused(ctx context.Context) bool {
	if !c.cfg.Paused() {
		return ctx.Err() == nil
	}
	c.m.paused.Set(1)
	defer c.m.paused.Set(0)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for c.cfg.Paused() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return ctx.Err() == nil
}

func (c *Consumer) work(ctx context.Context) {
	batch := make([]jetstream.Msg, 0, c.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		msg, ok := <-c.msgs
		if !ok {
			return
		}
		if ctx.Err() != nil {
			_ = msg.Nak() // stopping: hand back at once
			continue
		}
		batch = append(batch[:0], msg)
		timer.Reset(c.cfg.BatchWait)
	fill:
		for len(batch) < c.cfg.BatchSize {
			select {
			case m, ok := <-c.msgs:
				if !ok {
					break fill
				}
				batch = append(batch, m)
			case <-timer.C:
				break fill
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		c.handle(batch)
	}
}

func (c *Consumer) handle(batch []jetstream.Msg) {
	start := time.Now()
	// A slow batch (Postgres or CAMS slow) is kept alive so JetStream does not
	// redeliver it to another replica while this one is still on it.
	keepAlive := c.cfg.Consumer.AckWait / 3
	if keepAlive <= 0 {
		keepAlive = 10 * time.Second
	}
	stopKeepAlive := make(chan struct{})
	var keepWG sync.WaitGroup
	keepWG.Add(1)
	go func() {
		defer keepWG.Done()
		t := time.NewTicker(keepAlive)
		defer t.Stop()
		for {
			select {
			case <-stopKeepAlive:
				return
			case <-t.C:
				for _, m := range batch {
					_ = m.InProgress()
				}
			}
		}
	}()
	// The handler runs to completion even during shutdown, until Stop's context
	// ends: its commit decides the acks, and cutting it short earlier would only
	// turn finished work into redeliveries.
	after := &afterAck{}
	actions := c.cfg.Handler(context.WithValue(c.handlerCtx, afterAckKey{}, after), batch)
	close(stopKeepAlive)
	keepWG.Wait()
	for i, m := range batch {
		a := Action{Verdict: Skip}
		if i < len(actions) {
			a = actions[i]
		}
		var err error
		switch a.Verdict {
		case Ack:
			// A plain ack is enough: the takeover committed and is idempotent, so a
			// lost ack only causes a redelivery that the takeover ignores.
			err = m.Ack()
		case Nak:
			err = m.NakWithDelay(a.Delay)
		case Term:
			err = m.Term()
		}
		if err != nil {
			c.log.Warn("error answering JetStream (the message will be redelivered and deduplicated)", slog.Any("error", err))
		}
		c.m.verdicts.WithLabelValues(verdictName(a.Verdict)).Inc()
	}
	c.m.batchSize.Observe(float64(len(batch)))
	c.m.batchDuration.Observe(time.Since(start).Seconds())
	for _, f := range after.fns {
		f()
	}
}

func verdictName(v Verdict) string {
	switch v {
	case Ack:
		return "ack"
	case Nak:
		return "nak"
	case Term:
		return "term"
	}
	return "skip"
}

type metrics struct {
	verdicts      *prometheus.CounterVec
	batchSize     prometheus.Histogram
	batchDuration prometheus.Histogram
	paused        prometheus.Gauge
	// missedHeartbeats counts pull heartbeats missed (pull answers them with a
	// new pull request on the same iterator).
	missedHeartbeats prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, info func(context.Context) (*jetstream.ConsumerInfo, error)) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		verdicts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "msgrouter_consumer_messages_total",
			Help: "Stream messages handled by the router, by verdict (ack, nak, term, skip, handed_back).",
		}, []string{"verdict"}),
		batchSize: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "msgrouter_consumer_batch_size",
			Help:    "Messages per batch taken over.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		batchDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "msgrouter_consumer_batch_duration_seconds",
			Help:    "Time to take a batch over (lookups, commit), before the acks.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		paused: f.NewGauge(prometheus.GaugeOpts{
			Name: "msgrouter_consumer_paused",
			Help: "1 while the router has stopped pulling because CAMS is unavailable.",
		}),
		missedHeartbeats: f.NewCounter(prometheus.CounterOpts{
			Name: "msgrouter_consumer_missed_heartbeats_total",
			Help: "Pull heartbeats missed (nothing from JetStream for two heartbeat intervals); each is answered by a new pull request.",
		}),
	}
	reg.MustRegister(&lagCollector{info: info})
	return m
}

// lagCollector reports the consumer's lag from JetStream at scrape time.
type lagCollector struct {
	info func(context.Context) (*jetstream.ConsumerInfo, error)
}

var (
	pendingDesc     = prometheus.NewDesc("msgrouter_consumer_pending_messages", "Stream messages not yet delivered to the router consumer (lag).", nil, nil)
	ackPendingDesc  = prometheus.NewDesc("msgrouter_consumer_ack_pending_messages", "Messages delivered to routers and not yet acked.", nil, nil)
	redeliveredDesc = prometheus.NewDesc("msgrouter_consumer_redelivered_messages", "Messages currently being redelivered.", nil, nil)
)

func (l *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- ackPendingDesc
	ch <- redeliveredDesc
}

func (l *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := l.info(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(info.NumPending))
	ch <- prometheus.MustNewConstMetric(ackPendingDesc, prometheus.GaugeValue, float64(info.NumAckPending))
	ch <- prometheus.MustNewConstMetric(redeliveredDesc, prometheus.GaugeValue, float64(info.NumRedelivered))
}
