package e2e_test

import (
	"encoding/json"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

// traffic is what exercise sent and how it ended.
type traffic struct {
	natsIDs, httpIDs []string // delivered
	unknownID        string   // REJECTED / AGENT_NOT_FOUND
	goneID           string   // DEAD_LETTERED / DESTINATION_GONE
	failingID        string   // DEAD_LETTERED / MAX_ATTEMPTS_EXCEEDED, after its breaker opened
}

// exercise sends the traffic that makes every metric family of the issue move: a
// delivery to a NATS inbox, two to an HTTP inbox (the second is a CAMS cache hit),
// one to an unknown agent, one to an inbox answering 410, and last one to an inbox
// answering 500 until its breaker opens and the message is dead-lettered after
// DELIVERY_MAX_ATTEMPTS. It waits until all of them are terminal.
func exercise(t *testing.T, s *system, adminKey, ingestKey string) traffic {
	t.Helper()
	s.register(adminKey, "metrics-nats@example.com", mapping.TypeNATSSubject, "inbox.metrics")
	s.register(adminKey, "metrics-http@example.com", mapping.TypeHTTPEndpoint, s.hooks.URL+"/metrics-hook")
	s.register(adminKey, "metrics-gone@example.com", mapping.TypeHTTPEndpoint, s.hooks.URL+"/gone")
	s.hooks.Answer("/gone", http.StatusGone)
	msg := func(agent string) map[string]any {
		return map[string]any{"aiAgentAddress": agent, "payload": map[string]any{"n": 1}}
	}
	var tr traffic
	tr.natsIDs = append(tr.natsIDs, s.send(ingestKey, msg("metrics-nats@example.com")))
	tr.httpIDs = append(tr.httpIDs, s.send(ingestKey, msg("metrics-http@example.com")))
	tr.unknownID = s.send(ingestKey, msg("nobody@example.com"))
	tr.goneID = s.send(ingestKey, msg("metrics-gone@example.com"))
	for _, id := range append(tr.natsIDs, tr.httpIDs...) {
		require.Equal(t, "DELIVERED", s.waitFinal(adminKey, id).Status)
	}
	// The first lookup of this agent is cached now: the next one is a cache hit
	// (messages of one batch share a lookup, so it must come after).
	tr.httpIDs = append(tr.httpIDs, s.send(ingestKey, msg("metrics-http@example.com")))
	require.Equal(t, "DELIVERED", s.waitFinal(adminKey, tr.httpIDs[1]).Status)

	v := s.waitFinal(adminKey, tr.unknownID)
	require.Equal(t, "REJECTED", v.Status)
	require.Equal(t, "AGENT_NOT_FOUND", v.Reason)
	v = s.waitFinal(adminKey, tr.goneID)
	require.Equal(t, "DEAD_LETTERED", v.Status)
	require.Equal(t, "DESTINATION_GONE", v.Reason)

	s.register(adminKey, "metrics-failing@example.com", mapping.TypeHTTPEndpoint, s.broken.URL+"/failing")
	tr.failingID = s.send(ingestKey, msg("metrics-failing@example.com"))
	v = s.waitFinal(adminKey, tr.failingID)
	require.Equal(t, "DEAD_LETTERED", v.Status)
	require.Equal(t, "MAX_ATTEMPTS_EXCEEDED", v.Reason)
	require.Equal(t, 3, v.Attempts, "DELIVERY_MAX_ATTEMPTS")
	require.Equal(t, 3, len(s.broken.Requests()), "waiting behind the open breaker is not an attempt")
	return tr
}

// TestMetricsMove scrapes every service's /metrics over HTTP after traffic flowed
// and checks each family of issue 5 moved (or, for gauges, is exported).
func TestMetricsMove(t *testing.T) {
	t.Parallel()
	s := start(t, sysOptions{})
	exercise(t, s, "", "")
	// One admin call more, so the router's HTTP metrics have a 404 too.
	code, _, _ := s.request(http.MethodGet, s.urls["router"]+"/v1/messages/00000000-0000-0000-0000-000000000000", "", nil)
	require.Equal(t, http.StatusNotFound, code)

	type check struct {
		service, family string
		labels          []string
		min             float64 // the value (or sample count) is at least this
	}
	checks := []check{
		// ingest: requests by route and status, their latency, publish latency.
		{"ingest", "msgrouter_ingest_requests_total", []string{"route", "POST /v1/messages", "code", "202"}, 5},
		{"ingest", "msgrouter_ingest_request_duration_seconds", []string{"route", "POST /v1/messages"}, 5},
		{"ingest", "msgrouter_ingest_publish_duration_seconds", nil, 5},
		{"ingest", "msgrouter_ingest_accepted_total", []string{"sender", "anonymous"}, 5},
		// router: consumed, taken over, rejected by reason.
		{"router", "msgrouter_consumer_messages_total", []string{"verdict", "ack"}, 5},
		{"router", "msgrouter_consumer_batch_size", nil, 1},
		{"router", "msgrouter_router_messages_taken_over_total", nil, 5},
		{"router", "msgrouter_router_messages_rejected_total", []string{"reason", "AGENT_NOT_FOUND"}, 1},
		{"router", "msgrouter_router_takeover_lag_seconds", nil, 4},
		// CAMS lookups by outcome, latency, cache.
		{"router", "msgrouter_cams_lookups_total", []string{"outcome", "found"}, 4},
		{"router", "msgrouter_cams_lookups_total", []string{"outcome", "not_found"}, 1},
		{"router", "msgrouter_cams_lookup_duration_seconds", nil, 4},
		{"router", "msgrouter_cams_cache_hits_total", nil, 1},
		{"router", "msgrouter_cams_cache_misses_total", nil, 4},
		// Breakers: the state gauge exists, for CAMS and for the destinations used.
		{"router", "msgrouter_breaker_state", []string{"breaker", "cams"}, 0},
		// Outbox depth and age (sampled gauges: exported, 0 when idle).
		{"router", "msgrouter_outbox_pending_messages", nil, 0},
		{"router", "msgrouter_outbox_oldest_due_age_seconds", nil, 0},
		// Deliveries: attempts by type and outcome, latency, terminal outcomes,
		// dead letters, accept→delivery.
		{"router", "msgrouter_delivery_attempts_total", []string{"destination_type", mapping.TypeNATSSubject, "outcome", "delivered"}, 1},
		{"router", "msgrouter_delivery_attempts_total", []string{"destination_type", mapping.TypeHTTPEndpoint, "outcome", "delivered"}, 2},
		{"router", "msgrouter_delivery_duration_seconds", []string{"destination_type", mapping.TypeHTTPEndpoint}, 3},
		{"router", "msgrouter_deliveries_total", []string{"outcome", "delivered"}, 3},
		{"router", "msgrouter_deliveries_total", []string{"destination_type", mapping.TypeHTTPEndpoint, "outcome", "dead_lettered"}, 1},
		{"router", "msgrouter_dead_letters_total", []string{"reason", "DESTINATION_GONE"}, 1},
		{"router", "msgrouter_dead_letters_total", []string{"reason", "MAX_ATTEMPTS_EXCEEDED"}, 1},
		{"router", "msgrouter_delivery_attempts_total", []string{"destination_type", mapping.TypeHTTPEndpoint, "outcome", "failed"}, 3},
		// The failing inbox's breaker opened, and its retry waited behind it.
		{"router", "msgrouter_breaker_transitions_total", []string{"breaker", "http", "to", "open"}, 1},
		{"router", "msgrouter_outbox_waits_total", []string{"reason", "breaker_open"}, 1},
		{"router", "msgrouter_end_to_end_seconds", []string{"destination_type", mapping.TypeNATSSubject}, 1},
		{"router", "msgrouter_end_to_end_seconds", []string{"destination_type", mapping.TypeHTTPEndpoint}, 2},
		// Consumer lag from JetStream, read at scrape time.
		{"router", "msgrouter_consumer_pending_messages", nil, 0},
		{"router", "msgrouter_consumer_ack_pending_messages", nil, 0},
		// HTTP servers.
		{"router", "msgrouter_router_http_requests_total", []string{"route", "GET /v1/messages/{messageId}", "code", "200"}, 1},
		{"router", "msgrouter_router_http_requests_total", []string{"code", "404"}, 1},
		{"cams", "msgrouter_cams_http_requests_total", []string{"code", "201"}, 3},
		{"cams", "msgrouter_cams_http_requests_total", []string{"code", "200"}, 4},
	}
	fams := map[string]map[string]*dto.MetricFamily{}
	for _, name := range services {
		fams[name] = s.scrape(name)
	}
	for _, c := range checks {
		got, matched := metricValue(fams[c.service], c.family, c.labels...)
		require.NotZero(t, matched, "%s exports %s%v", c.service, c.family, c.labels)
		require.GreaterOrEqual(t, got, c.min, "%s %s%v", c.service, c.family, c.labels)
	}
	// Each destination has a breaker (labelled by origin or subject) once used.
	require.GreaterOrEqual(t, len(fams["router"]["msgrouter_breaker_state"].GetMetric()), 3, "cams + at least two destinations")

	// Rejections by reason at ingest.
	code, _, body := s.request(http.MethodPost, s.urls["ingest"]+"/v1/messages", "", `{"aiAgentAddress": ""}`)
	require.Equal(t, http.StatusBadRequest, code)
	var e struct{ ErrorCode string }
	require.NoError(t, json.Unmarshal(body, &e))
	require.Equal(t, "INVALID_REQUEST", e.ErrorCode)
	got, _ := metricValue(s.scrape("ingest"), "msgrouter_ingest_rejected_total", "reason", "invalid")
	require.Equal(t, 1.0, got)
}
