package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	dto "github.com/prometheus/client_model/go"

	"github.com/msgrouter/msgrouter/internal/apiclient"
	"github.com/msgrouter/msgrouter/internal/camsserver"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/ingest"
	"github.com/msgrouter/msgrouter/internal/router"
	"github.com/msgrouter/msgrouter/internal/testutil/bodytest"
	"github.com/msgrouter/msgrouter/internal/testutil/inboxtest"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// inboxStream captures every NATS agent inbox of the tests ("inbox.>").
const inboxStream = "INBOX"

// services names the three binaries, as the keys of system.urls and system.regs.
var services = []string{"ingest", "router", "cams"}

// system is ingest, router and CAMS running in this process, as cmd/msgrouter wires
// them, on loopback ports chosen by the kernel.
type system struct {
	t      *testing.T
	env    map[string]string
	js     jetstream.JetStream
	inbox  jetstream.Stream
	urls   map[string]string               // base URL per service
	regs   map[string]*prometheus.Registry // registry per service (what /metrics shows)
	client *http.Client
	hooks  *inboxtest.Server // HTTP inboxes answering as told
	broken *inboxtest.Server // HTTP inboxes answering 500, on another origin (breaker)
}

type sysOptions struct {
	env map[string]string    // overrides of the test defaults
	tp  trace.TracerProvider // nil: each service uses a no-op provider
}

// start runs the system until the test ends; the cleanup cancels it and requires
// every service to stop cleanly within its SHUTDOWN_TIMEOUT.
func start(t *testing.T, o sysOptions) *system {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	inbox, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: inboxStream, Subjects: []string{"inbox.>"}})
	require.NoError(t, err)

	camsLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	env := map[string]string{
		"NATS_URL":     ns.URL,
		"DATABASE_URL": pgtest.NewURL(t), // router and CAMS share it: their tables differ
		"CAMS_API_URL": "http://" + camsLn.Addr().String(),
		"INGEST_ADDR":  "127.0.0.1:0",
		"ROUTER_ADDR":  "127.0.0.1:0",
		"CAMS_ADDR":    camsLn.Addr().String(),
		// Test inboxes are httptest servers on loopback.
		"DELIVERY_ALLOW_PRIVATE_NETWORKS": "true",
		"DELIVERY_BACKOFF_INITIAL":        "20ms",
		"DELIVERY_BACKOFF_MAX":            "200ms",
		"DELIVERY_MAX_ATTEMPTS":           "3",
		"DELIVERY_TIMEOUT":                "5s",
		// Two failures open a destination's breaker; it stays open well longer
		// than a retry's backoff plus the outbox sweep, so a retry waits behind it.
		"BREAKER_FAILURES":     "2",
		"BREAKER_OPEN_TIMEOUT": "2s",
		"SHUTDOWN_TIMEOUT":     "10s",
		"LOG_LEVEL":            "debug",
	}
	for k, v := range o.env {
		env[k] = v
	}
	camsCfg, err := config.LoadCAMS(config.FromMap(env))
	require.NoError(t, err)
	ingestCfg, err := config.LoadIngest(config.FromMap(env))
	require.NoError(t, err)
	routerCfg, err := config.LoadRouter(config.FromMap(env))
	require.NoError(t, err)

	transport := &http.Transport{}
	s := &system{
		t: t, env: env, js: js, inbox: inbox,
		urls:   map[string]string{"cams": "http://" + camsLn.Addr().String()},
		regs:   map[string]*prometheus.Registry{},
		client: &http.Client{Transport: transport, Timeout: 30 * time.Second},
		hooks:  inboxtest.New(t, http.StatusOK),
		broken: inboxtest.New(t, http.StatusInternalServerError),
	}
	for _, name := range services {
		reg := prometheus.NewRegistry()
		// As the binaries do (cmd/*): the deploy files may query these families.
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		s.regs[name] = reg
	}

	log := logger(t)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, len(services))
	var wg sync.WaitGroup
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				done <- &serviceError{name: name, err: err}
				return
			}
			done <- nil
		}()
	}
	ingestReady := make(chan string, 1)
	routerReady := make(chan string, 1)
	run("cams", func() error {
		return camsserver.Serve(ctx, camsLn, camsCfg, log.With("service", "cams"), s.regs["cams"])
	})
	run("ingest", func() error {
		opts := []ingest.RunOption{ingest.OnReady(func(a net.Addr) { ingestReady <- a.String() })}
		if o.tp != nil {
			opts = append(opts, ingest.WithTracerProvider(o.tp))
		}
		return ingest.Run(ctx, ingestCfg, log.With("service", "ingest"), s.regs["ingest"], opts...)
	})
	run("router", func() error {
		return router.Run(ctx, routerCfg, router.Options{
			Logger: log.With("service", "router"), Registry: s.regs["router"], TracerProvider: o.tp, Ready: routerReady,
		})
	})
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(60 * time.Second):
			t.Error("the services did not stop within 60s")
			return
		}
		close(done)
		for err := range done {
			require.NoError(t, err, "a service did not stop cleanly")
		}
		transport.CloseIdleConnections()
	}
	t.Cleanup(stop)

	deadline := time.After(60 * time.Second)
	for s.urls["ingest"] == "" || s.urls["router"] == "" {
		select {
		case a := <-ingestReady:
			s.urls["ingest"] = "http://" + a
		case a := <-routerReady:
			s.urls["router"] = "http://" + a
		case err := <-done:
			t.Fatalf("a service stopped while starting: %v", err)
		case <-deadline:
			t.Fatal("the services did not start within 60s")
		}
	}
	require.Eventually(t, func() bool {
		for _, name := range services {
			resp, err := s.client.Get(s.urls[name] + "/health/ready")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "every service reports ready")
	return s
}

type serviceError struct {
	name string
	err  error
}

func (e *serviceError) Error() string { return e.name + ": " + e.err.Error() }

// logger discards the services' logs unless E2E_LOG=1 (then they go to stderr, one
// JSON line per event, for a failing test).
func logger(t *testing.T) *slog.Logger {
	if os.Getenv("E2E_LOG") == "1" {
		return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// request sends an HTTP request to a service and returns the status, the headers and
// the body. key, when not empty, goes in Authorization as a bearer key.
func (s *system) request(method, url, key string, body any, header ...string) (int, http.Header, []byte) {
	s.t.Helper()
	rd := bodytest.Reader(s.t, body)
	req, err := http.NewRequest(method, url, rd)
	require.NoError(s.t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.client.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return resp.StatusCode, resp.Header, raw
}

// register creates an agent mapping through the CAMS API.
func (s *system) register(key, address, typ, inbox string) {
	s.t.Helper()
	code, _, body := s.request(http.MethodPost, s.urls["cams"]+"/v1/agent-inboxes", key, map[string]string{
		"aiAgentAddress": address, "inboxDestinationType": typ, "inboxName": inbox,
		"description": "e2e agent", "ownerTeam": "e2e",
	})
	require.Equal(s.t, http.StatusCreated, code, "registering %s: %s", address, body)
}

// send submits a message to ingest and returns its messageId; it requires 202.
func (s *system) send(key string, msg map[string]any, header ...string) string {
	s.t.Helper()
	code, _, body := s.request(http.MethodPost, s.urls["ingest"]+"/v1/messages", key, msg, header...)
	require.Equal(s.t, http.StatusAccepted, code, "POST /v1/messages: %s", body)
	var out struct {
		MessageID string `json:"messageId"`
	}
	require.NoError(s.t, json.Unmarshal(body, &out))
	require.Regexp(s.t, uuidRE, out.MessageID)
	return out.MessageID
}

const uuidRE = `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`

// waitFinal polls the router's admin API until the message reaches a terminal
// status and returns its view.
func (s *system) waitFinal(key, id string) apiclient.Message {
	s.t.Helper()
	var v apiclient.Message
	require.Eventually(s.t, func() bool {
		code, _, body := s.request(http.MethodGet, s.urls["router"]+"/v1/messages/"+id, key, nil)
		if code != http.StatusOK {
			return false
		}
		v = apiclient.Message{}
		require.NoError(s.t, json.Unmarshal(body, &v))
		return v.Status == "DELIVERED" || v.Status == "REJECTED" || v.Status == "DEAD_LETTERED"
	}, 30*time.Second, 20*time.Millisecond, "message %s reaches a terminal status", id)
	return v
}

// inboxMessages returns the messages stored in the NATS inbox stream on subject.
func (s *system) inboxMessages(subject string) []*jetstream.RawStreamMsg {
	s.t.Helper()
	ctx := context.Background()
	info, err := s.inbox.Info(ctx)
	require.NoError(s.t, err)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.inbox.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		if m.Subject == subject {
			out = append(out, m)
		}
	}
	return out
}

// scrape reads a service's /metrics over HTTP, as Prometheus would.
func (s *system) scrape(service string) map[string]*dto.MetricFamily {
	s.t.Helper()
	code, _, body := s.request(http.MethodGet, s.urls[service]+"/metrics", "", nil)
	require.Equal(s.t, http.StatusOK, code)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(s.t, err, "%s /metrics parses", service)
	return fams
}

// received returns the requests of inbox whose X-Message-Id is id.
func received(inbox *inboxtest.Server, id string) []inboxtest.Request {
	var out []inboxtest.Request
	for _, r := range inbox.Requests() {
		if r.Header.Get("X-Message-Id") == id {
			out = append(out, r)
		}
	}
	return out
}

// metricValue sums the samples of family name whose labels include every pair of
// match (histograms add their observation counts), and says how many samples
// matched.
func metricValue(fams map[string]*dto.MetricFamily, name string, match ...string) (sum float64, matched int) {
	f, ok := fams[name]
	if !ok {
		return 0, 0
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(match); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == match[i] && lp.GetValue() == match[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		matched++
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, matched
}

// escapedAddress is how an agent address travels in an HTTP header (DESIGN §5).
func escapedAddress(a string) string { return url.PathEscape(a) }

// natsHeader reads a header of a stored NATS message (case-sensitive names).
func natsHeader(m *jetstream.RawStreamMsg, name string) string {
	if v := m.Header[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}
