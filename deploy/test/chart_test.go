package deploytest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "../helm/msgrouter"

// rendered is one chart rendering, decoded.
type rendered struct {
	deployments  map[string]*appsv1.Deployment
	services     map[string]*corev1.Service
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs         map[string]*policyv1.PodDisruptionBudget
	netpols      map[string]*networkingv1.NetworkPolicy
	secrets      map[string]*corev1.Secret
	scaledObject map[string]*ScaledObject
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// render renders the chart with vals (merged over values.yaml, as helm template
// does) and decodes every object strictly into its API type.
func render(t *testing.T, vals map[string]any) rendered {
	t.Helper()
	ch, err := loader.Load(chartDir)
	require.NoError(t, err)
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "mr", Namespace: "msgrouter", IsInstall: true}, chartutil.DefaultCapabilities)
	require.NoError(t, err)
	out, err := engine.Render(ch, rv)
	require.NoError(t, err)
	r := rendered{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		netpols: map[string]*networkingv1.NetworkPolicy{}, secrets: map[string]*corev1.Secret{},
		scaledObject: map[string]*ScaledObject{},
	}
	// kinds: each kind the chart may render, its apiVersion, and where it is kept.
	type kind struct {
		apiVersion string
		keep       func(name string, decode func(any))
	}
	kinds := map[string]kind{
		"Deployment":              {"apps/v1", keepIn(r.deployments)},
		"Service":                 {"v1", keepIn(r.services)},
		"Secret":                  {"v1", keepIn(r.secrets)},
		"HorizontalPodAutoscaler": {"autoscaling/v2", keepIn(r.hpas)},
		"PodDisruptionBudget":     {"policy/v1", keepIn(r.pdbs)},
		"NetworkPolicy":           {"networking.k8s.io/v1", keepIn(r.netpols)},
		"ScaledObject":            {"keda.sh/v1alpha1", keepIn(r.scaledObject)},
	}
	for _, name := range slices.Sorted(maps.Keys(out)) {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range docSep.Split(out[name], -1) {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			require.NoError(t, yaml.Unmarshal([]byte(doc), &head), "%s", name)
			if head.Kind == "" {
				require.Empty(t, strings.TrimSpace(stripComments(doc)), "%s: an object without a kind", name)
				continue
			}
			k, ok := kinds[head.Kind]
			require.True(t, ok, "%s renders an unexpected kind %s", name, head.Kind)
			require.Equal(t, k.apiVersion, head.APIVersion, "%s: %s", name, head.Kind)
			require.NotEmpty(t, head.Metadata.Name)
			k.keep(head.Metadata.Name, func(v any) {
				require.NoError(t, yaml.UnmarshalStrict([]byte(doc), v), "%s: %s %s decodes strictly", name, head.Kind, head.Metadata.Name)
			})
		}
	}
	return r
}

// keepIn returns a function decoding a document with decode into a new T, kept as
// m[name].
func keepIn[T any](m map[string]*T) func(name string, decode func(any)) {
	return func(name string, decode func(any)) {
		v := new(T)
		decode(v)
		m[name] = v
	}
}

func stripComments(doc string) string {
	var keep []string
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// secretVars must come from a Secret, never from a literal value.
var secretVars = []string{"DATABASE_URL", "INGEST_API_KEYS", "ADMIN_API_KEYS", "CAMS_API_KEY", "DELIVERY_SIGNING_SECRETS", "CAMS_SECRETS_KEY"}

// checkDeployments checks what every Deployment must have (DESIGN §11).
func checkDeployments(t *testing.T, r rendered) {
	t.Helper()
	for name, d := range r.deployments {
		spec := d.Spec.Template.Spec
		require.Len(t, spec.Containers, 1, name)
		c := spec.Containers[0]
		require.NotNil(t, c.LivenessProbe, name)
		require.Equal(t, "/health/live", c.LivenessProbe.HTTPGet.Path, name)
		require.NotNil(t, c.ReadinessProbe, name)
		require.Equal(t, "/health/ready", c.ReadinessProbe.HTTPGet.Path, name)
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		st, ok := env["SHUTDOWN_TIMEOUT"]
		require.True(t, ok, "%s sets SHUTDOWN_TIMEOUT", name)
		shutdown, err := time.ParseDuration(st.Value)
		require.NoError(t, err)
		require.NotNil(t, spec.TerminationGracePeriodSeconds, name)
		require.Greater(t, time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second, shutdown,
			"%s: the grace period is above SHUTDOWN_TIMEOUT, so SIGTERM drains before SIGKILL", name)
		for _, v := range secretVars {
			if e, ok := env[v]; ok {
				require.Empty(t, e.Value, "%s: %s is not a literal", name, v)
				require.NotNil(t, e.ValueFrom, "%s: %s", name, v)
				require.NotNil(t, e.ValueFrom.SecretKeyRef, "%s: %s comes from a Secret", name, v)
			}
		}
		require.Equal(t, d.Spec.Selector.MatchLabels, pick(d.Spec.Template.Labels, d.Spec.Selector.MatchLabels), "%s: the selector matches its pods", name)
		require.NotNil(t, spec.SecurityContext.RunAsNonRoot)
		require.True(t, *spec.SecurityContext.RunAsNonRoot, name)
	}
	// Every Service selects the pods of a Deployment.
	for name, s := range r.services {
		found := false
		for _, d := range r.deployments {
			found = found || maps.Equal(s.Spec.Selector, pick(d.Spec.Template.Labels, s.Spec.Selector))
		}
		require.True(t, found, "service %s selects a Deployment's pods", name)
	}
}

// pick returns the entries of labels whose keys are in keys.
func pick(labels, keys map[string]string) map[string]string {
	out := map[string]string{}
	for k := range keys {
		if v, ok := labels[k]; ok {
			out[k] = v
		}
	}
	return out
}

func envOf(d *appsv1.Deployment) map[string]string {
	out := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		out[e.Name] = e.Value
	}
	return out
}

func TestChartLints(t *testing.T) {
	t.Parallel()
	for _, vals := range []map[string]any{nil, {"secrets": map[string]any{"create": true, "databaseURL": "postgres://x@pg/msgrouter"}}} {
		l := lint.All(chartDir, vals, "msgrouter", true)
		for _, m := range l.Messages {
			require.Less(t, m.Severity, support.WarningSev, "helm lint: %s", m)
		}
	}
}

func TestChartDefaults(t *testing.T) {
	t.Parallel()
	r := render(t, nil)
	checkDeployments(t, r)
	require.Len(t, r.deployments, 3, "ingest, router, cams")
	ingest, router := r.deployments["mr-msgrouter-ingest"], r.deployments["mr-msgrouter-router"]
	require.NotNil(t, ingest)
	require.NotNil(t, router)
	require.Equal(t, []string{"router"}, router.Spec.Template.Spec.Containers[0].Args)
	require.Nil(t, router.Spec.Replicas, "the ScaledObject owns the router's replica count")
	require.Nil(t, ingest.Spec.Replicas, "the HPA owns ingest's replica count")
	for _, d := range []*appsv1.Deployment{ingest, router} {
		env := envOf(d)
		require.Equal(t, "3", env["STREAM_REPLICAS"], "R3 streams")
		require.Equal(t, "168h", env["STREAM_MAX_AGE"])
	}
	require.Equal(t, "http://mr-msgrouter-cams:8001", envOf(router)["CAMS_API_URL"])

	// Ingest: an HPA on CPU.
	hpa := r.hpas["mr-msgrouter-ingest"]
	require.NotNil(t, hpa)
	require.Equal(t, "mr-msgrouter-ingest", hpa.Spec.ScaleTargetRef.Name)
	require.Equal(t, corev1.ResourceCPU, hpa.Spec.Metrics[0].Resource.Name)
	require.NotContains(t, r.hpas, "mr-msgrouter-router", "KEDA scales the routers")

	// Router: KEDA on consumer lag AND outbox depth.
	so := r.scaledObject["mr-msgrouter-router"]
	require.NotNil(t, so)
	require.Equal(t, "mr-msgrouter-router", so.Spec.ScaleTargetRef.Name)
	types := map[string]map[string]string{}
	for _, tr := range so.Spec.Triggers {
		for k := range tr.Metadata {
			require.Contains(t, triggerMetadata[tr.Type], k, "KEDA's %s scaler reads no %q", tr.Type, k)
		}
		types[tr.Type] = tr.Metadata
	}
	require.Equal(t, "ROUTER_MESSAGES", types["nats-jetstream"]["stream"])
	require.Equal(t, "router", types["nats-jetstream"]["consumer"])
	require.Contains(t, types["postgresql"]["query"], "FROM outbox")
	require.Equal(t, "DATABASE_URL", types["postgresql"]["connectionFromEnv"], "the router container's DATABASE_URL, from the Secret")
	_, err := strconv.Atoi(types["postgresql"]["targetQueryValue"])
	require.NoError(t, err)

	for _, c := range []string{"ingest", "router", "cams"} {
		require.Contains(t, r.netpols, "mr-msgrouter-"+c, "a NetworkPolicy for %s", c)
	}
	require.Contains(t, r.pdbs, "mr-msgrouter-ingest")
	require.Contains(t, r.pdbs, "mr-msgrouter-router")
	require.Empty(t, r.secrets, "the Secret is the operator's by default")
}

func TestChartWithoutKEDAOrCAMS(t *testing.T) {
	t.Parallel()
	r := render(t, map[string]any{
		"router":  map[string]any{"autoscaling": map[string]any{"keda": map[string]any{"enabled": false}}, "env": map[string]any{"CAMS_API_URL": "https://cams.example"}},
		"cams":    map[string]any{"enabled": false},
		"ingest":  map[string]any{"autoscaling": map[string]any{"enabled": false}},
		"secrets": map[string]any{"create": true, "databaseURL": "postgres://u@pg-1,pg-2/msgrouter?target_session_attrs=read-write"},
	})
	checkDeployments(t, r)
	require.Empty(t, r.scaledObject)
	hpa := r.hpas["mr-msgrouter-router"]
	require.NotNil(t, hpa, "a plain HPA when KEDA is absent")
	require.Equal(t, "mr-msgrouter-router", hpa.Spec.ScaleTargetRef.Name)
	require.NotContains(t, r.deployments, "mr-msgrouter-cams")
	require.NotContains(t, r.netpols, "mr-msgrouter-cams")
	require.Equal(t, int32(2), *r.deployments["mr-msgrouter-ingest"].Spec.Replicas)
	require.Equal(t, "https://cams.example", envOf(r.deployments["mr-msgrouter-router"])["CAMS_API_URL"])
	sec := r.secrets["mr-msgrouter"]
	require.NotNil(t, sec)
	require.Contains(t, sec.StringData["DATABASE_URL"], "target_session_attrs=read-write")
	for _, d := range r.deployments {
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				require.Equal(t, "mr-msgrouter", e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
}

func TestChartDocumentedValuesFiles(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(chartDir, "values-postgres-ha.yaml"))
	require.NoError(t, err)
	var vals map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &vals))
	r := render(t, vals)
	checkDeployments(t, r)
	pol := r.netpols["mr-msgrouter-router"]
	found := false
	for _, e := range pol.Spec.Egress {
		for _, to := range e.To {
			if to.PodSelector != nil && to.PodSelector.MatchLabels["cnpg.io/cluster"] == "msgrouter-pg" {
				found = true
			}
		}
	}
	require.True(t, found, "the Postgres egress rule is narrowed to the HA cluster's pods")
	require.Contains(t, string(raw), "target_session_attrs=read-write")
	require.Contains(t, string(raw), "default_query_exec_mode=exec")

	// values-nats.yaml is for the official NATS chart: 3 JetStream nodes.
	raw, err = os.ReadFile(filepath.Join(chartDir, "values-nats.yaml"))
	require.NoError(t, err)
	var nv struct {
		Config struct {
			Cluster struct {
				Enabled  bool `json:"enabled"`
				Replicas int  `json:"replicas"`
			} `json:"cluster"`
			JetStream struct {
				Enabled bool `json:"enabled"`
			} `json:"jetstream"`
		} `json:"config"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &nv))
	require.True(t, nv.Config.Cluster.Enabled)
	require.Equal(t, 3, nv.Config.Cluster.Replicas)
	require.True(t, nv.Config.JetStream.Enabled)
	require.Contains(t, string(raw), "sync_interval")
}

// TestStrictDecodingCatchesUnknownFields shows the decoding above can fail.
func TestStrictDecodingCatchesUnknownFields(t *testing.T) {
	t.Parallel()
	var d appsv1.Deployment
	require.Error(t, yaml.UnmarshalStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n"), &d))
	var so ScaledObject
	require.Error(t, yaml.UnmarshalStrict([]byte("spec:\n  minReplicas: 1\n"), &so))
	require.NoError(t, yaml.UnmarshalStrict([]byte(fmt.Sprintf("spec:\n  minReplicaCount: %d\n  triggers: []\n", 1)), &so))
}
