package console

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/msgrouter/msgrouter/internal/httpapi"
)

// CountLimit bounds every count the overview and the dead-letter listing make: a
// count stops at CountLimit rows, so a huge backlog costs a bounded scan, and the
// console shows "100000+" rather than an exact figure.
const CountLimit = 100000

// Overview is the body of GET /v1/overview.
type Overview struct {
	// At is the database clock when the counts were read.
	At time.Time `json:"at"`
	// Pending counts messages awaiting delivery or retry (the outbox), across all
	// replicas; Held those among them held for an INACTIVE agent (reason
	// AGENT_INACTIVE, DESIGN §5a). DeadLettered and Rejected count failed messages
	// not replayed. Each stops at CountLimit.
	Pending      int64 `json:"pending"`
	Held         int64 `json:"held"`
	DeadLettered int64 `json:"deadLettered"`
	Rejected     int64 `json:"rejected"`
	CountLimit   int64 `json:"countLimit"`
	// ReceivedLast10s counts messages every replica took over in the last 10
	// seconds (database clock): ReceivedLast10s/10 is the cluster's intake rate.
	ReceivedLast10s int64 `json:"receivedLast10s"`
	// Replica identifies the router process that answered, StartedAt when it
	// started: Counters are this process's own, cumulative since StartedAt, so a
	// rate is the difference of two answers from the same Replica.
	Replica   string    `json:"replica"`
	StartedAt time.Time `json:"startedAt"`
	Counters  Counters  `json:"counters"`
	// StreamPending is the router consumer's lag: messages accepted into JetStream
	// that no router has taken over yet (msgrouter_consumer_pending_messages); null
	// when JetStream did not answer.
	StreamPending *float64 `json:"streamPending"`
	// Breakers lists the breaker groups (cams, http, nats) of this process that are
	// not closed; empty when all are closed.
	Breakers []Breaker `json:"breakers"`
}

// Counters are this replica's cumulative counts, from its own metrics.
type Counters struct {
	TakenOver    float64 `json:"takenOver"`    // msgrouter_router_messages_taken_over_total
	Delivered    float64 `json:"delivered"`    // msgrouter_deliveries_total{outcome="delivered"}
	DeadLettered float64 `json:"deadLettered"` // msgrouter_dead_letters_total
	Attempts     float64 `json:"attempts"`     // msgrouter_delivery_attempts_total
}

// Breaker is one breaker group that is open or half-open
// (msgrouter_breaker_state: 1 half-open, 2 open).
type Breaker struct {
	Name  string `json:"name"`
	State string `json:"state"` // OPEN or HALF_OPEN
}

type overview struct {
	pool     *pgxpool.Pool
	gatherer prometheus.Gatherer
	replica  string
	started  time.Time

	// One answer serves every caller for cacheFor, so any number of open consoles
	// cost at most one round of counts (and one metrics gather) a second.
	mu       sync.Mutex
	cached   Overview
	cachedAt time.Time
}

// cacheFor is how long one overview answer is reused.
const cacheFor = time.Second

// countsSQL reads the overview's counts, each bounded by $1 rows and each served by
// a small table (outbox holds only pending messages) or an index.
const countsSQL = `SELECT now(),
    (SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT $1) p),
    (SELECT count(*) FROM (SELECT 1 FROM outbox o JOIN messages m ON m.message_id = o.message_id
        WHERE m.reason = 'AGENT_INACTIVE' LIMIT $1) h),
    (SELECT count(*) FROM (SELECT 1 FROM failures WHERE status = 'DEAD_LETTERED' LIMIT $1) d),
    (SELECT count(*) FROM (SELECT 1 FROM failures WHERE status = 'REJECTED' LIMIT $1) r),
    (SELECT count(*) FROM (SELECT 1 FROM messages WHERE received_at >= now() - interval '10 seconds' LIMIT $1) t)`

func (o *overview) get(ctx context.Context) (Overview, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.cachedAt.IsZero() && time.Since(o.cachedAt) < cacheFor {
		return o.cached, nil
	}
	v, err := o.read(ctx)
	if err != nil {
		return v, err
	}
	o.cached, o.cachedAt = v, time.Now()
	return v, nil
}

func (o *overview) read(ctx context.Context) (Overview, error) {
	v := Overview{CountLimit: CountLimit, Replica: o.replica, StartedAt: o.started.UTC(), Breakers: []Breaker{}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := o.pool.QueryRow(ctx, countsSQL, CountLimit).Scan(&v.At, &v.Pending, &v.Held, &v.DeadLettered, &v.Rejected, &v.ReceivedLast10s)
	if err != nil {
		return v, err
	}
	v.At = v.At.UTC()
	if o.gatherer != nil {
		v.Counters, v.StreamPending, v.Breakers = readMetrics(o.gatherer)
	}
	return v, nil
}

func (o *overview) serve(w http.ResponseWriter, r *http.Request) {
	v, err := o.get(r.Context())
	if err != nil {
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "cannot read the message store: "+err.Error())
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
}

// readMetrics sums the counters the overview shows and lists the breakers that are
// not closed. A gather error leaves what could be read.
func readMetrics(g prometheus.Gatherer) (Counters, *float64, []Breaker) {
	var c Counters
	var streamPending *float64
	breakers := []Breaker{}
	families, _ := g.Gather()
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch f.GetName() {
			case "msgrouter_router_messages_taken_over_total":
				c.TakenOver += m.GetCounter().GetValue()
			case "msgrouter_deliveries_total":
				if labels["outcome"] == "delivered" {
					c.Delivered += m.GetCounter().GetValue()
				}
			case "msgrouter_dead_letters_total":
				c.DeadLettered += m.GetCounter().GetValue()
			case "msgrouter_delivery_attempts_total":
				c.Attempts += m.GetCounter().GetValue()
			case "msgrouter_consumer_pending_messages":
				v := m.GetGauge().GetValue()
				streamPending = &v
			case "msgrouter_breaker_state":
				switch m.GetGauge().GetValue() {
				case 1:
					breakers = append(breakers, Breaker{Name: labels["breaker"], State: "HALF_OPEN"})
				case 2:
					breakers = append(breakers, Breaker{Name: labels["breaker"], State: "OPEN"})
				}
			}
		}
	}
	sort.Slice(breakers, func(i, j int) bool { return breakers[i].Name < breakers[j].Name })
	return c, streamPending, breakers
}
