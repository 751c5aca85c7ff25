package console

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/msgrouter/msgrouter/internal/httpapi"
)

// Options are what the console's routes need from the router.
type Options struct {
	// Pool is the router's database (overview counts, dead-letter listing).
	Pool *pgxpool.Pool
	// Gatherer is the router's metrics registry: the overview reads its delivery
	// counters and breaker states from it.
	Gatherer prometheus.Gatherer
	// CAMSURL and CAMSAPIKey are the router's CAMS_API_URL and CAMS_API_KEY: the
	// agent routes call CAMS with them (DESIGN §4, §12).
	CAMSURL    string
	CAMSAPIKey string
	// CAMSTimeout bounds each CAMS call of the agent routes (CAMS_TIMEOUT; at least
	// 5 s, since an operator's write is not the hot path).
	CAMSTimeout time.Duration
	// Client makes the CAMS calls; nil uses a client with CAMSTimeout.
	Client *http.Client
	Logger *slog.Logger
}

// Mount registers the console (GET /console/…) and its admin routes on m:
//
//	GET  /v1/overview                      counts, throughput counters, breakers
//	GET  /v1/dead-letters                  failed messages, newest failure first, with a count
//	GET  /v1/agents                        CAMS GET /v1/agent-inboxes, secrets masked
//	POST /v1/agents                        CAMS POST /v1/agent-inboxes
//	GET  /v1/agents/{aiAgentAddress}       CAMS GET, secrets masked
//	PUT  /v1/agents/{aiAgentAddress}       CAMS PUT (partial update)
//
// The admin routes sit behind the router's ADMIN_API_KEYS like the rest of the
// admin API; only the static assets are open (OpenPaths). It fails only when
// CAMSURL is not an absolute http(s) URL.
func Mount(m *httpapi.Mux, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	base, err := url.Parse(o.CAMSURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("console: CAMS_API_URL %q is not an absolute http(s) URL", o.CAMSURL)
	}
	if o.Client == nil {
		o.Client = &http.Client{
			Timeout:       max(o.CAMSTimeout, 5*time.Second),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	assets := assetHandler()
	m.Handle("GET /console/", assets)
	m.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
	})
	ov := &overview{pool: o.Pool, gatherer: o.Gatherer, replica: uuid.NewString(), started: time.Now()}
	m.HandleFunc("GET /v1/overview", ov.serve)
	dl := &deadLetters{pool: o.Pool}
	m.HandleFunc("GET /v1/dead-letters", dl.list)
	ag := &agents{base: strings.TrimRight(base.String(), "/"), key: o.CAMSAPIKey, client: o.Client, log: o.Logger}
	m.HandleFunc("GET /v1/agents", ag.list)
	m.HandleFunc("POST /v1/agents", ag.create)
	m.HandleFunc("GET /v1/agents/{aiAgentAddress}", ag.get)
	m.HandleFunc("PUT /v1/agents/{aiAgentAddress}", ag.update)
	return nil
}

func notFound(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteError(w, http.StatusNotFound, httpapi.CodeNotFound, "no console file at "+r.URL.Path)
}

var errBadCursor = errors.New("cursor is not one this API returned")
