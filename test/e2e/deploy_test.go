package e2e_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/msgrouter/msgrouter/internal/config"
)

// The operator files of deploy/ and the compose setup, checked against the code:
// the queries name metrics and labels the services export, the compose
// environment names variables the binaries read (with valid defaults), and the
// Prometheus targets are the compose services on their configured ports.
// promtool checks the same files more deeply when it is installed
// (scripts/check-deploy.sh).

func repoPath(t *testing.T, parts ...string) string {
	t.Helper()
	wd, err := os.Getwd()
	require.NoError(t, err)
	return filepath.Join(append([]string{wd, "..", ".."}, parts...)...)
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, v), "%s parses", path)
}

// ---- Grafana dashboard

type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

type dashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(repoPath(t, "deploy", "grafana", "msgrouter-dashboard.json"))
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(raw, &d), "the dashboard is JSON")
	return d
}

// panels flattens rows (collapsed rows keep their panels inside).
func (d dashboard) panels() []grafanaPanel {
	var out []grafanaPanel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

func TestDashboardIsWellFormed(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	require.NotEmpty(t, d.UID)
	require.NotEmpty(t, d.Title)
	require.GreaterOrEqual(t, d.SchemaVersion, 36)
	require.True(t, slices.ContainsFunc(d.Templating.List, func(v struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Query string `json:"query"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}), "a Prometheus data source variable, so the dashboard imports anywhere")

	ids := map[int]bool{}
	titles := map[string]bool{}
	for _, p := range d.panels() {
		require.NotZero(t, p.ID, "panel %q has an id", p.Title)
		require.False(t, ids[p.ID], "panel id %d is unique", p.ID)
		ids[p.ID] = true
		require.NotEmpty(t, p.Title)
		require.True(t, p.GridPos.W > 0 && p.GridPos.H > 0 && p.GridPos.X+p.GridPos.W <= 24, "panel %q fits the 24-column grid", p.Title)
		if p.Type == "row" {
			continue
		}
		require.False(t, titles[p.Title], "panel title %q is unique", p.Title)
		titles[p.Title] = true
		require.NotNil(t, p.Datasource, "panel %q names its data source", p.Title)
		require.Equal(t, "${datasource}", p.Datasource.UID, "panel %q uses the data source variable", p.Title)
		require.NotEmpty(t, p.Targets, "panel %q queries something", p.Title)
		for _, tg := range p.Targets {
			require.NotEmpty(t, tg.Expr, "panel %q target %s has an expression", p.Title, tg.RefID)
			requireBalanced(t, tg.Expr)
		}
	}
	// What the issue asks the dashboard to show.
	for _, want := range []string{
		"msgrouter_ingest_requests_total", "msgrouter_router_messages_taken_over_total", "msgrouter_deliveries_total",
		"msgrouter_end_to_end_seconds_bucket", "msgrouter_outbox_pending_messages", "msgrouter_outbox_oldest_due_age_seconds",
		"msgrouter_breaker_state", "msgrouter_dead_letters_total", "msgrouter_router_messages_rejected_total",
		"msgrouter_consumer_pending_messages", "msgrouter_consumer_ack_pending_messages", "msgrouter_cams_lookups_total",
		"msgrouter_cams_cache_hits_total", "msgrouter_router_http_requests_total",
	} {
		require.True(t, slices.ContainsFunc(d.panels(), func(p grafanaPanel) bool {
			return slices.ContainsFunc(p.Targets, func(tg struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			}) bool {
				return strings.Contains(tg.Expr, want)
			})
		}), "the dashboard shows %s", want)
	}
}

func requireBalanced(t *testing.T, expr string) {
	t.Helper()
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for _, r := range expr {
		switch {
		case r == '"':
			inString = !inString
		case inString:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			require.NotEmpty(t, stack, "unbalanced %q in %s", r, expr)
			require.Equal(t, pairs[r], stack[len(stack)-1], "unbalanced %q in %s", r, expr)
			stack = stack[:len(stack)-1]
		}
	}
	require.Empty(t, stack, "unbalanced brackets in %s", expr)
	require.False(t, inString, "unterminated string in %s", expr)
}

// ---- Prometheus rules

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	readYAML(t, repoPath(t, "deploy", "prometheus", "alerts.yml"), &rf)
	return rf
}

func TestAlertRulesAreWellFormed(t *testing.T) {
	t.Parallel()
	rf := loadRules(t)
	require.NotEmpty(t, rf.Groups)
	names := map[string]bool{}
	for _, g := range rf.Groups {
		require.NotEmpty(t, g.Name)
		require.NotEmpty(t, g.Rules, "group %s", g.Name)
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "every rule of %s is an alert", g.Name)
			require.False(t, names[r.Alert], "alert %s is unique", r.Alert)
			names[r.Alert] = true
			require.NotEmpty(t, strings.TrimSpace(r.Expr), r.Alert)
			requireBalanced(t, r.Expr)
			if r.For != "" {
				_, err := time.ParseDuration(r.For)
				require.NoError(t, err, "%s: for", r.Alert)
			}
			require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], "%s: severity", r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], "%s: summary", r.Alert)
			require.NotEmpty(t, r.Annotations["description"], "%s: description", r.Alert)
		}
	}
	// The alerts the issue asks for.
	for _, want := range []string{"MsgrouterOutboxBehind", "MsgrouterDeadLetters", "MsgrouterBreakerOpen",
		"MsgrouterConsumerLagGrowing", "MsgrouterTargetDown", "MsgrouterNotReady", "MsgrouterIngestUnavailable"} {
		require.True(t, names[want], "alert %s exists", want)
	}
}

// ---- Every query names exported metrics and labels

// TestDeployQueriesUseExportedMetrics runs the system, makes every kind of message
// flow (delivered, rejected, dead-lettered twice over, a breaker opening), and
// checks each metric and label the dashboard and the alert rules query is one the
// services export.
func TestDeployQueriesUseExportedMetrics(t *testing.T) {
	t.Parallel()
	s := start(t, sysOptions{})
	exercise(t, s, "", "")
	families := map[string]*dto.MetricFamily{}
	for _, name := range services {
		fams, err := s.regs[name].Gather()
		require.NoError(t, err)
		for _, f := range fams {
			families[f.GetName()] = f
		}
	}

	var exprs []string
	for _, p := range loadDashboard(t).panels() {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	require.NotEmpty(t, exprs)
	for _, expr := range exprs {
		sels := selectors(expr)
		require.NotEmpty(t, sels, "%s queries a metric", expr)
		var exprLabels []string
		for _, sel := range sels {
			labels, ok := exportedLabels(families, sel.metric)
			require.True(t, ok, "%s (in %s) is exported by a service", sel.metric, expr)
			exprLabels = append(exprLabels, labels...)
			for _, l := range sel.labels {
				require.Contains(t, labels, l, "%s has the label %s (in %s)", sel.metric, l, expr)
			}
		}
		for _, l := range groupingLabels(expr) {
			require.Contains(t, exprLabels, l, "the grouping label %s is a label of a metric of %s", l, expr)
		}
	}
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// exportedLabels returns the label names of a metric name as Prometheus stores it
// (histograms as _bucket with le, _sum and _count), and whether it exists. "up" is
// Prometheus' own series per target.
func exportedLabels(families map[string]*dto.MetricFamily, name string) ([]string, bool) {
	if name == "up" {
		return targetLabels, true
	}
	f, ok := families[name]
	var extra []string
	if !ok {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, cut := strings.CutSuffix(name, suffix)
			if bf, found := families[base]; cut && found && (bf.GetType() == dto.MetricType_HISTOGRAM || bf.GetType() == dto.MetricType_SUMMARY) {
				f, ok = bf, true
				if suffix == "_bucket" {
					extra = append(extra, "le")
				}
			}
		}
	}
	if !ok {
		return nil, false
	}
	labels := append(slices.Clone(targetLabels), extra...)
	for _, m := range f.GetMetric() {
		for _, lp := range m.GetLabel() {
			if !slices.Contains(labels, lp.GetName()) {
				labels = append(labels, lp.GetName())
			}
		}
	}
	return labels, true
}

type selector struct {
	metric string
	labels []string // label names matched on
}

var (
	stringRE    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	rangeRE     = regexp.MustCompile(`\[[^\]]*\]`)
	groupingRE  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	matchersRE  = regexp.MustCompile(`\{([^}]*)\}`)
	matcherRE   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	identRE     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promqlWords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"}
)

// selectors finds the metric selectors of a PromQL expression. It is not a parser:
// it blanks out strings, ranges and grouping clauses, reads the label matchers,
// and takes the remaining identifiers that are not functions or keywords.
func selectors(expr string) []selector {
	e := stringRE.ReplaceAllString(expr, `""`)
	e = rangeRE.ReplaceAllString(e, " ")
	e = groupingRE.ReplaceAllString(e, " ")
	var out []selector
	// name{matchers}
	for _, loc := range matchersRE.FindAllStringSubmatchIndex(e, -1) {
		var labels []string
		for _, m := range matcherRE.FindAllStringSubmatch(e[loc[2]:loc[3]], -1) {
			labels = append(labels, m[1])
		}
		prefix := strings.TrimRight(e[:loc[0]], " ")
		name := identRE.FindAllString(prefix, -1)
		if len(name) > 0 && strings.HasSuffix(prefix, name[len(name)-1]) {
			out = append(out, selector{metric: name[len(name)-1], labels: labels})
		}
	}
	bare := matchersRE.ReplaceAllString(e, " ")
	for _, loc := range identRE.FindAllStringIndex(bare, -1) {
		word := bare[loc[0]:loc[1]]
		if slices.Contains(promqlWords, word) || strings.HasPrefix(strings.TrimLeft(bare[loc[1]:], " "), "(") {
			continue // a keyword or a function
		}
		if loc[0] > 0 && (bare[loc[0]-1] == '$' || bare[loc[0]-1] == '.' || (bare[loc[0]-1] >= '0' && bare[loc[0]-1] <= '9')) {
			continue // a Grafana variable, or part of a number (1e3)
		}
		if !slices.ContainsFunc(out, func(s selector) bool { return s.metric == word }) {
			out = append(out, selector{metric: word})
		}
	}
	return out
}

// groupingLabels returns the labels of by/without/on/ignoring clauses.
func groupingLabels(expr string) []string {
	var out []string
	for _, m := range groupingRE.FindAllStringSubmatch(stringRE.ReplaceAllString(expr, `""`), -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

func TestSelectors(t *testing.T) {
	t.Parallel()
	got := selectors(`histogram_quantile(0.99, sum by (le, destination_type) (rate(msgrouter_end_to_end_seconds_bucket{destination_type=~"HTTP.*", x!="a{b}"}[$__rate_interval])))
		/ on (job) group_left max(up{job="x"}) > 1e3 and deriv(max(foo_total)[10m:1m]) > 0`)
	require.Equal(t, []selector{
		{metric: "msgrouter_end_to_end_seconds_bucket", labels: []string{"destination_type", "x"}},
		{metric: "up", labels: []string{"job"}},
		{metric: "foo_total"},
	}, got)
	require.Equal(t, []string{"le", "destination_type", "job"}, groupingLabels(`sum by (le, destination_type) (x) / on (job) y`))
}

// ---- Prometheus scrape configuration and docker-compose.yml

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Profiles    []string          `yaml:"profiles"`
	DependsOn   yaml.Node         `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// dependsOn reads depends_on in its short (list) or long (map) syntax.
func (s composeService) dependsOn(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	switch s.DependsOn.Kind {
	case yaml.SequenceNode:
		var names []string
		require.NoError(t, s.DependsOn.Decode(&names))
		for _, name := range names {
			out[name] = "service_started"
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		require.NoError(t, s.DependsOn.Decode(&m))
		for name, d := range m {
			out[name] = d.Condition
		}
	}
	return out
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	readYAML(t, repoPath(t, "docker-compose.yml"), &c)
	require.NotEmpty(t, c.Services)
	return c
}

// interpolate applies compose's ${VAR:-default} with an empty shell environment.
var interpolateRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

func interpolate(s string) string {
	return interpolateRE.ReplaceAllStringFunc(s, func(m string) string { return interpolateRE.FindStringSubmatch(m)[2] })
}

// binaryOf says which msgrouter binary a service of our image runs.
func binaryOf(s composeService) string {
	cmd := append(slices.Clone(s.Entrypoint), s.Command...)
	for _, word := range strings.Fields(strings.Join(cmd, " ")) {
		if slices.Contains([]string{"ingest", "router", "cams", "routerctl"}, word) {
			return word
		}
	}
	return ""
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	for _, name := range []string{"postgres", "nats-1", "nats-2", "nats-3", "cams", "ingest", "router", "prometheus", "grafana"} {
		require.Contains(t, c.Services, name)
	}
	require.Equal(t, "postgres:15", c.Services["postgres"].Image)
	// A 3-node NATS cluster (DESIGN §11), each node with its own JetStream volume.
	for _, name := range []string{"nats-1", "nats-2", "nats-3"} {
		n := c.Services[name]
		require.True(t, strings.HasPrefix(n.Image, "nats:2.12"), "nats:2.12")
		require.Equal(t, []string{"-c", "/etc/nats/nats-cluster.conf"}, n.Command)
		require.Equal(t, name, n.Environment["SERVER_NAME"])
		require.True(t, slices.ContainsFunc(n.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/data") }), "JetStream data on a volume")
	}
	conf, err := os.ReadFile(repoPath(t, "deploy", "nats", "nats-cluster.conf"))
	require.NoError(t, err)
	for _, want := range []string{"nats://nats-1:6222", "nats://nats-2:6222", "nats://nats-3:6222", "sync_interval", "store_dir: /data"} {
		require.Contains(t, string(conf), want)
	}
	// Only ingest's port is published by default; routers have none, so
	// `--scale router=N` works.
	for name, svc := range c.Services {
		if len(svc.Profiles) == 0 && name != "ingest" {
			require.Empty(t, svc.Ports, "%s publishes no host port", name)
		}
	}
	require.Equal(t, []string{"8080:8080"}, c.Services["ingest"].Ports)
	for _, name := range []string{"prometheus", "grafana"} {
		require.Equal(t, []string{"observability"}, c.Services[name].Profiles, name)
	}

	vars := configVariables(t)
	routers := 0
	for name, svc := range c.Services {
		// Health-gated dependencies on everything that has a health check.
		for dep, cond := range svc.dependsOn(t) {
			require.Contains(t, c.Services, dep, "%s depends on %s", name, dep)
			if c.Services[dep].Healthcheck != nil && len(svc.Profiles) == 0 {
				require.Equal(t, "service_healthy", cond, "%s waits for %s to be healthy", name, dep)
			}
		}
		// Bind mounts exist in the repository.
		for _, v := range svc.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				_, err := os.Stat(repoPath(t, src))
				require.NoError(t, err, "%s mounts %s", name, src)
			} else {
				require.Contains(t, c.Volumes, src, "%s uses a declared volume", name)
			}
		}
		if svc.Build == nil {
			continue // not our image
		}
		bin := binaryOf(svc)
		require.NotEmpty(t, bin, "service %s runs a msgrouter binary", name)
		env := map[string]string{}
		for k, v := range svc.Environment {
			env[k] = interpolate(v)
			if strings.HasPrefix(k, "OTEL_") {
				continue // read by the OpenTelemetry SDK (internal/telemetry)
			}
			require.Contains(t, vars[bin], k, "%s sets %s, which %s does not read", name, k, bin)
		}
		// The defaults are valid configurations.
		var addrVar string
		switch bin {
		case "router":
			routers++
			var rc config.Router
			rc, err = config.LoadRouter(config.FromMap(env))
			require.Equal(t, 3, rc.NATS.Stream.Replicas, "%s creates R3 streams", name)
			require.Len(t, strings.Split(rc.NATS.URL, ","), 3, "%s knows every NATS node", name)
			addrVar = "ROUTER_ADDR"
		case "ingest":
			var ic config.Ingest
			ic, err = config.LoadIngest(config.FromMap(env))
			require.Equal(t, 3, ic.NATS.Stream.Replicas, "%s creates R3 streams", name)
			addrVar = "INGEST_ADDR"
		case "cams":
			_, err = config.LoadCAMS(config.FromMap(env))
			addrVar = "CAMS_ADDR"
		}
		require.NoError(t, err, "%s: the compose defaults load", name)
		if addrVar != "" {
			_, port, err := net.SplitHostPort(env[addrVar])
			require.NoError(t, err, "%s: %s", name, addrVar)
			require.NotNil(t, svc.Healthcheck, "%s has a health check", name)
			require.Contains(t, strings.Join(svc.Healthcheck.Test, " "), ":"+port+"/health/ready", "%s probes its readiness", name)
			for _, p := range svc.Ports {
				require.True(t, strings.HasSuffix(p, ":"+port), "%s publishes its %s port (%s)", name, addrVar, p)
			}
		}
	}
	require.Equal(t, 1, routers, "one scalable router service")
}

func TestPrometheusScrapesTheComposeServices(t *testing.T) {
	t.Parallel()
	var pc struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Type  string   `yaml:"type"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, repoPath(t, "deploy", "prometheus", "prometheus.yml"), &pc)
	for _, f := range pc.RuleFiles {
		_, err := os.Stat(repoPath(t, "deploy", "prometheus", f))
		require.NoError(t, err, "rule file %s", f)
	}
	require.Contains(t, pc.RuleFiles, "alerts.yml")

	c := loadCompose(t)
	want := map[string]string{"ingest": "msgrouter-ingest", "router": "msgrouter-router", "cams": "msgrouter-cams"}
	scraped := map[string]bool{}
	for _, sc := range pc.ScrapeConfigs {
		// DNS service discovery (the scaled routers) is checked as static targets.
		for _, d := range sc.DNSSDConfigs {
			require.Equal(t, "A", d.Type)
			for _, n := range d.Names {
				sc.StaticConfigs = append(sc.StaticConfigs, struct {
					Targets []string `yaml:"targets"`
				}{Targets: []string{net.JoinHostPort(n, strconv.Itoa(d.Port))}})
			}
		}
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, err := net.SplitHostPort(target)
				require.NoError(t, err)
				svc, ok := c.Services[host]
				if !ok {
					require.Equal(t, "prometheus", sc.JobName, "target %s is a compose service", target)
					continue
				}
				bin := binaryOf(svc)
				require.Equal(t, want[bin], sc.JobName, "%s is scraped by the job the dashboard and alerts select", host)
				require.Contains(t, []string{"", "/metrics"}, sc.MetricsPath)
				addr := svc.Environment[strings.ToUpper(bin)+"_ADDR"]
				require.Equal(t, ":"+port, interpolate(addr), "%s is scraped on its listening port", host)
				scraped[host] = true
			}
		}
	}
	for name, svc := range c.Services {
		if svc.Build != nil && want[binaryOf(svc)] != "" {
			require.True(t, scraped[name], "Prometheus scrapes %s", name)
		}
	}
}

// configVariables reads, from the source, the environment variables each binary
// reads: what config.LoadIngest/LoadRouter/LoadCAMS (and the helpers they call)
// name, and what routerctl passes to getenv.
func configVariables(t *testing.T) map[string][]string {
	t.Helper()
	envName := regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	funcs := map[string]*ast.FuncDecl{}
	parseDir := func(dir string) {
		fset := token.NewFileSet()
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
			require.NoError(t, err)
			for _, d := range f.Decls {
				if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
					funcs[filepath.Base(dir)+"."+fd.Name.Name] = fd
				}
			}
		}
	}
	parseDir(repoPath(t, "internal", "config"))
	parseDir(repoPath(t, "cmd", "routerctl"))

	// reachable collects the variable names in the calls of fn and of the package
	// functions it calls. A name given to keys() is also read with _FILE.
	var reachable func(pkg, fn string, seen map[string]bool, out *[]string)
	reachable = func(pkg, fn string, seen map[string]bool, out *[]string) {
		key := pkg + "." + fn
		fd := funcs[key]
		if fd == nil || seen[key] {
			return
		}
		seen[key] = true
		ast.Inspect(fd, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			callee := ""
			if id, ok := call.Fun.(*ast.Ident); ok {
				callee = id.Name
				reachable(pkg, callee, seen, out)
			}
			for _, a := range call.Args {
				lit, ok := a.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil || !envName.MatchString(v) {
					continue
				}
				*out = append(*out, v)
				if callee == "keys" {
					*out = append(*out, v+"_FILE")
				}
			}
			return true
		})
	}
	vars := map[string][]string{}
	for bin, fn := range map[string]string{"ingest": "config.LoadIngest", "router": "config.LoadRouter", "cams": "config.LoadCAMS", "routerctl": "routerctl.newApp"} {
		pkg, name, _ := strings.Cut(fn, ".")
		var out []string
		reachable(pkg, name, map[string]bool{}, &out)
		require.NotEmpty(t, out, "variables of %s", fn)
		vars[bin] = out
	}
	require.Contains(t, vars["router"], "DELIVERY_ALLOW_PRIVATE_NETWORKS")
	require.Contains(t, vars["router"], "ADMIN_API_KEYS_FILE")
	require.Contains(t, vars["ingest"], "NATS_URL")
	require.Contains(t, vars["routerctl"], "ROUTERCTL_API_KEY")
	return vars
}
