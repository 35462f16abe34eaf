package kubernetes_test

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/agentauthz/agentauthz/internal/envoyproc"
)

const testDSN = "postgres://agentauthz@db.agentauthz:5432/agentauthz?sslmode=verify-full&passfile=/var/run/secrets/pg/pgpass"

// shared is the approvals setting a chart with several replicas needs.
var shared = map[string]any{"approvals": map[string]any{"store": "postgres", "postgresDSN": testDSN}}

// merge merges maps into a new one, later ones winning; an empty map replaces what it lands on.
func merge(maps ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range maps {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				if cur, ok := out[k].(map[string]any); ok {
					out[k] = merge(cur, sub)
					continue
				}
			}
			out[k] = v
		}
	}
	return out
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

// flag returns the value of --name=VALUE in args, and whether it is there.
func flag(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name {
			return "", true
		}
	}
	return "", false
}

func mountOf(c corev1.Container, volume string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func volume(t *testing.T, spec corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %q", name)
	return corev1.Volume{}
}

// containerfileUser is the uid:gid the image runs as, from the Containerfile.
func containerfileUser(t *testing.T) (uid, gid int64) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^USER ([0-9]+):([0-9]+)$`).FindStringSubmatch(string(data))
	if m == nil {
		t.Fatal("no numeric USER in the Containerfile")
	}
	u, _ := strconv.ParseInt(m[1], 10, 64)
	g, _ := strconv.ParseInt(m[2], 10, 64)
	return u, g
}

// TestChartFrontProxy: the front-proxy Deployment, with its Service and PodDisruptionBudget,
// the policy from a ConfigMap mounted as a whole directory (so that the kubelet's updates reach
// it and it reloads), SPIFFE mTLS from the CSI driver, probes on the health and readiness paths,
// whole CPUs and a memory limit the Go runtime knows.
func TestChartFrontProxy(t *testing.T) {
	objs := mustRender(t, values(t, "", merge(shared, map[string]any{
		"frontProxy": map[string]any{"allowedClients": []any{"spiffe://acme.internal/envoy"}},
	})))
	dep := only[*appsv1.Deployment](t, objs, 1)[0]
	svc := only[*corev1.Service](t, objs, 1)[0]
	pdb := only[*policyv1.PodDisruptionBudget](t, objs, 1)[0]
	cm := only[*corev1.ConfigMap](t, objs, 1)[0]
	only[*corev1.ServiceAccount](t, objs, 1)
	only[*networkingv1.NetworkPolicy](t, objs, 0)

	pod := dep.Spec.Template
	podLabels := labels.Set(pod.Labels)
	for what, sel := range map[string]map[string]string{
		"Deployment": dep.Spec.Selector.MatchLabels, "Service": svc.Spec.Selector, "PodDisruptionBudget": pdb.Spec.Selector.MatchLabels,
	} {
		if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(podLabels) {
			t.Errorf("the %s's selector %v does not select the pods (%v)", what, sel, pod.Labels)
		}
	}
	if *dep.Spec.Replicas != 2 || dep.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Errorf("replicas %d, maxUnavailable %v", *dep.Spec.Replicas, dep.Spec.Strategy.RollingUpdate.MaxUnavailable)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", pdb.Spec.MaxUnavailable)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service clusterIP %q, want headless", svc.Spec.ClusterIP)
	}

	c := container(t, pod.Spec, "agentauthz")
	if c.Image != testImage+":v0.1.0" {
		t.Errorf("image %q", c.Image)
	}
	if c.Args[0] != "serve" {
		t.Errorf("args %v", c.Args)
	}
	for name, want := range map[string]string{
		"grpc-addr": "0.0.0.0:9001", "http-addr": "0.0.0.0:9002", "policy": "/etc/agentauthz/policy",
		"spiffe-socket": "unix:///spiffe-workload-api/spire-agent.sock", "grpc-allowed-clients": "spiffe://acme.internal/envoy",
		"http-tls-spiffe": "", "approval-store": testDSN, "data-dir": "/var/lib/agentauthz",
	} {
		if got, ok := flag(c.Args, name); !ok || got != want {
			t.Errorf("--%s = %q (given: %v), want %q", name, got, ok, want)
		}
	}
	if _, ok := flag(c.Args, "insecure"); ok {
		t.Error("--insecure with SPIFFE mTLS")
	}

	// The policy: the whole ConfigMap volume, never a subPath (which the kubelet never updates).
	m, ok := mountOf(c, "policy")
	if !ok || m.MountPath != "/etc/agentauthz/policy" || m.SubPath != "" || !m.ReadOnly {
		t.Errorf("policy mount %+v", m)
	}
	if v := volume(t, pod.Spec, "policy"); v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
		t.Errorf("policy volume %+v, want ConfigMap %s", v, cm.Name)
	}
	for name, content := range demoPolicyValues(t) {
		if cm.Data[name] != content {
			t.Errorf("the policy ConfigMap's %s differs from the demo policy's", name)
		}
	}
	// The Workload API socket, from the SPIFFE CSI driver.
	spiffe := volume(t, pod.Spec, "spiffe-workload-api")
	if spiffe.CSI == nil || spiffe.CSI.Driver != "csi.spiffe.io" || spiffe.CSI.ReadOnly == nil || !*spiffe.CSI.ReadOnly {
		t.Errorf("SPIFFE volume %+v", spiffe)
	}
	if m, ok := mountOf(c, "spiffe-workload-api"); !ok || m.MountPath != "/spiffe-workload-api" {
		t.Errorf("SPIFFE mount %+v", m)
	}

	// Probes: the paths agentauthz serves (TestChartServes runs them against the real binary).
	for what, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		want := "/healthz"
		if what == "readiness" {
			want = "/readyz"
		}
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "http" || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("%s probe %+v, want HTTPS %s on port http", what, p, want)
		}
	}

	// Whole CPUs, requested as limited (Guaranteed QoS); GOMEMLIMIT under the memory limit.
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().Cmp(*lim.Cpu()) != 0 || req.Memory().Cmp(*lim.Memory()) != 0 || lim.Cpu().MilliValue()%1000 != 0 {
		t.Errorf("resources %+v: want whole CPUs and requests equal to limits", c.Resources)
	}
	var goMemLimit string
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			goMemLimit = e.Value
		}
	}
	if q, err := resource.ParseQuantity(strings.TrimSuffix(goMemLimit, "B")); err != nil || q.Cmp(*lim.Memory()) >= 0 {
		t.Errorf("GOMEMLIMIT %q, want below the memory limit %v (%v)", goMemLimit, lim.Memory(), err)
	}

	uid, gid := containerfileUser(t)
	sc := pod.Spec.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != uid || sc.RunAsGroup == nil || *sc.RunAsGroup != gid || !*sc.RunAsNonRoot {
		t.Errorf("pod security context %+v, want the image's user %d:%d, non-root", sc, uid, gid)
	}
	if s := c.SecurityContext; s == nil || !*s.ReadOnlyRootFilesystem || *s.AllowPrivilegeEscalation || !slices.Equal(s.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context %+v", s)
	}
	if *pod.Spec.AutomountServiceAccountToken {
		t.Error("the service account token is mounted; agentauthz calls no Kubernetes API")
	}
}

// TestChartSidecar: one API's pod, Envoy and agentauthz sharing a unix socket in a volume only
// they mount, as different users in one group, with the socket made 0660 in that group; Envoy's
// SVIDs from the SPIFFE CSI driver; Envoy's configuration envoy/sidecar.yaml with this API's
// names.
func TestChartSidecar(t *testing.T) {
	objs := mustRender(t, values(t, "", map[string]any{
		"mode":    "sidecar",
		"sidecar": map[string]any{"app": map[string]any{"image": "registry.example/helpdesk-api:1.0"}},
	}))
	dep := only[*appsv1.Deployment](t, objs, 1)[0]
	only[*corev1.Service](t, objs, 1)
	only[*policyv1.PodDisruptionBudget](t, objs, 0)
	cms := only[*corev1.ConfigMap](t, objs, 2)
	var envoyConfig string
	for _, cm := range cms {
		if s, ok := cm.Data["envoy.yaml"]; ok {
			envoyConfig = s
		}
	}
	pod := dep.Spec.Template.Spec
	app, envoy, authz := container(t, pod, "api"), container(t, pod, "envoy"), container(t, pod, "agentauthz")

	grpcAddr, _ := flag(authz.Args, "grpc-addr")
	sock, ok := strings.CutPrefix(grpcAddr, "unix:")
	if !ok {
		t.Fatalf("--grpc-addr %q, want a unix socket", grpcAddr)
	}
	if mode, _ := flag(authz.Args, "grpc-socket-mode"); mode != "0660" {
		t.Errorf("--grpc-socket-mode %q, want 0660", mode)
	}
	group, _ := flag(authz.Args, "grpc-socket-group")
	if http, _ := flag(authz.Args, "http-addr"); http != "127.0.0.1:9002" {
		t.Errorf("--http-addr %q: beside an API, the HTTP listener stays on the pod's loopback", http)
	}
	if !strings.Contains(envoyConfig, "path: "+sock+"\n") {
		t.Errorf("Envoy's configuration does not name the socket %s", sock)
	}
	// Different users, one group: the socket's.
	es, as := envoy.SecurityContext, authz.SecurityContext
	if *es.RunAsUser == *as.RunAsUser || strconv.FormatInt(*es.RunAsGroup, 10) != group || strconv.FormatInt(*as.RunAsGroup, 10) != group {
		t.Errorf("envoy runs as %d:%d, agentauthz as %d:%d, socket group %s: want two users in the socket's group",
			*es.RunAsUser, *es.RunAsGroup, *as.RunAsUser, *as.RunAsGroup, group)
	}
	// The socket's volume: Envoy and agentauthz, not the API.
	for _, c := range []corev1.Container{envoy, authz} {
		if m, ok := mountOf(c, "agentauthz-socket"); !ok || m.MountPath != path.Dir(sock) {
			t.Errorf("%s mounts the socket's volume at %+v, want %s", c.Name, m, path.Dir(sock))
		}
	}
	if _, ok := mountOf(app, "agentauthz-socket"); ok {
		t.Error("the API's container mounts agentauthz's socket")
	}
	if v := volume(t, pod, "agentauthz-socket"); v.EmptyDir == nil {
		t.Errorf("socket volume %+v, want an emptyDir", v)
	}
	// Envoy's SVIDs: the CSI driver's Workload API socket, where Envoy's configuration looks.
	spiffe := volume(t, pod, "spiffe-workload-api")
	if spiffe.CSI == nil || spiffe.CSI.Driver != "csi.spiffe.io" {
		t.Errorf("SPIFFE volume %+v", spiffe)
	}
	if m, ok := mountOf(envoy, "spiffe-workload-api"); !ok || !strings.Contains(envoyConfig, "path: "+m.MountPath+"/spire-agent.sock\n") {
		t.Errorf("Envoy mounts the Workload API at %+v; its configuration does not find the socket there", m)
	}
	if _, ok := mountOf(authz, "spiffe-workload-api"); ok {
		t.Error("agentauthz mounts the Workload API beside an API: it needs no SVID there")
	}
}

// sidecarYAML is envoy/sidecar.yaml.
func sidecarYAML(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "sidecar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestChartEnvoyIsSidecarYAML: the chart's copy of envoy/sidecar.yaml is that file, and what the
// chart renders from it is that file with only the values it is told, put where envoy/sidecar.yaml
// says to adapt it. envoy/config_test.go checks envoy/sidecar.yaml's safety settings; real Envoy
// validates what the chart renders.
func TestChartEnvoyIsSidecarYAML(t *testing.T) {
	src := sidecarYAML(t)
	cp, err := os.ReadFile(filepath.Join("chart", "files", "envoy-sidecar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(src, cp) {
		t.Fatal("chart/files/envoy-sidecar.yaml is not envoy/sidecar.yaml: cp ../sidecar.yaml chart/files/envoy-sidecar.yaml")
	}
	// The agents_oauth chain, from its comment to its filters, which the chart leaves out
	// unless sidecar.oauth.
	start := bytes.Index(src, []byte("\n        # The API's host, asked for by name (SNI)"))
	end := bytes.Index(src, []byte("\n          filters: *inbound_http\n"))
	if start < 0 || end < start {
		t.Fatal("envoy/sidecar.yaml has no agents_oauth chain where the chart looks for it")
	}
	oauthChain := string(src[start+1 : end+len("\n          filters: *inbound_http\n")])
	for _, tc := range []struct {
		name  string
		given map[string]any
		want  map[string]string
	}{
		{"defaults", map[string]any{}, map[string]string{
			"path: /run/spire/agent/public/api.sock": "path: /spiffe-workload-api/spire-agent.sock",
			oauthChain:                               "",
		}},
		{"OAuth", map[string]any{"sidecar": map[string]any{"oauth": true}}, map[string]string{
			"path: /run/spire/agent/public/api.sock": "path: /spiffe-workload-api/spire-agent.sock",
		}},
		{"another API", map[string]any{
			"spiffe": map[string]any{"socketPath": "/run/spire/sockets/agent.sock"},
			"sidecar": map[string]any{
				"host": "payables.corp.example", "apiSpiffeID": "spiffe://corp.example/ns/finance/sa/payables",
				"agentsPrefix": "spiffe://corp.example/agents/", "trustDomain": "corp.example",
				"maxRequestBytes": 262144, "app": map[string]any{"port": 9090},
			},
		}, map[string]string{
			"path: /run/spire/agent/public/api.sock":      "path: /run/spire/sockets/agent.sock",
			`name: "spiffe://acme.internal/api/helpdesk"`: `name: "spiffe://corp.example/ns/finance/sa/payables"`,
			`prefix: "spiffe://acme.internal/agent/"`:     `prefix: "spiffe://corp.example/agents/"`,
			`name: "spiffe://acme.internal"`:              `name: "spiffe://corp.example"`,
			`domains: ["helpdesk.acme.internal"]`:         `domains: ["payables.corp.example"]`,
			"port_value: 8080":                            "port_value: 9090",
			"max_request_bytes: 65536":                    "max_request_bytes: 262144",
			oauthChain:                                    "",
		}},
		{"another API with OAuth", map[string]any{
			"sidecar": map[string]any{"host": "payables.corp.example", "oauth": true},
		}, map[string]string{
			"path: /run/spire/agent/public/api.sock":   "path: /spiffe-workload-api/spire-agent.sock",
			`domains: ["helpdesk.acme.internal"]`:      `domains: ["payables.corp.example"]`,
			`server_names: ["helpdesk.acme.internal"]`: `server_names: ["payables.corp.example"]`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := mustRender(t, values(t, "", merge(map[string]any{
				"mode": "sidecar", "sidecar": map[string]any{"app": map[string]any{"image": "registry.example/api:1"}},
			}, tc.given)))
			var got string
			for _, cm := range only[*corev1.ConfigMap](t, objs, 2) {
				if s, ok := cm.Data["envoy.yaml"]; ok {
					got = s
				}
			}
			want, err := envoyproc.Render(src, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("the chart's Envoy configuration is not envoy/sidecar.yaml with %v:\n%s", tc.want, lineDiff(string(want), got))
			}
			file := filepath.Join(t.TempDir(), "envoy.yaml")
			if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			if out := envoyproc.Validate(t, file); strings.Contains(out, "deprecated") {
				t.Errorf("Envoy warns about the rendered configuration:\n%s", out)
			}
		})
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)) && b.Len() < 2000; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %q\n  got  %q\n", i+1, wl, gl)
		}
	}
	return b.String()
}

// TestChartRefuses: values that would deploy something unsafe or broken fail the install with a
// message saying what to set; misspelt or malformed values are refused by values.schema.json.
func TestChartRefuses(t *testing.T) {
	spiffeClients := map[string]any{"frontProxy": map[string]any{"allowedClients": []any{"spiffe://acme.internal/envoy"}}}
	sidecar := func(extra map[string]any) map[string]any {
		return merge(map[string]any{"mode": "sidecar", "sidecar": map[string]any{"app": map[string]any{"image": "registry.example/api:1"}}}, extra)
	}
	for _, tc := range []struct {
		name   string
		values string
		want   string
	}{
		{"no image", values(t, "", merge(shared, spiffeClients, map[string]any{"image": map[string]any{"repository": ""}})), "image.repository"},
		{"misspelt value", values(t, "", merge(shared, spiffeClients, map[string]any{"frontProxy": map[string]any{"replica": 3}})), "replica"},
		{"unknown mode", values(t, "", merge(shared, spiffeClients, map[string]any{"mode": "daemonset"})), "mode"},
		{"no policy", values(t, "", merge(shared, spiffeClients, map[string]any{"policy": map[string]any{"files": map[string]any{}}})), "give the policy"},
		{"two policies", values(t, "", merge(shared, spiffeClients, map[string]any{"policy": map[string]any{"existingConfigMap": "mine"}})), "not both"},
		{"replicas with embedded approvals", values(t, "", spiffeClients), "embedded approval store"},
		{"postgres without a DSN", values(t, "", merge(spiffeClients, map[string]any{"approvals": map[string]any{"store": "postgres"}})), "postgresDSN"},
		{"a DSN for the embedded store", values(t, "", merge(spiffeClients, map[string]any{"approvals": map[string]any{"postgresDSN": testDSN}})), "approvals.store"},
		{"SPIFFE without clients", values(t, "", shared), "allowedClients"},
		{"clients without SPIFFE", values(t, "", merge(shared, spiffeClients, map[string]any{"frontProxy": map[string]any{"tls": "plaintext"}})), "needs frontProxy.tls spiffe"},
		{"not a SPIFFE ID", values(t, "", merge(shared, map[string]any{"frontProxy": map[string]any{"allowedClients": []any{"envoy"}}})), "allowedClients"},
		{"a NetworkPolicy admitting nobody", values(t, "", merge(shared, map[string]any{"frontProxy": map[string]any{"tls": "plaintext", "networkPolicy": map[string]any{"enabled": true}}})), "grpcFrom"},
		{"sidecar without the API", values(t, "", map[string]any{"mode": "sidecar"}), "sidecar.app.image"},
		{"a host that is not a name", values(t, "", sidecar(map[string]any{"sidecar": map[string]any{"host": `helpdesk"]`}})), "host"},
		{"an API ID that is not a SPIFFE ID", values(t, "", sidecar(map[string]any{"sidecar": map[string]any{"apiSpiffeID": "spiffe://acme.internal"}})), "apiSpiffeID"},
		{"a body larger than the buffer", values(t, "", sidecar(map[string]any{"sidecar": map[string]any{"maxRequestBytes": 2097152}})), "maxRequestBytes"},
		{"the root group for the socket", values(t, "", sidecar(map[string]any{"sidecar": map[string]any{"socketGroup": 0}})), "socketGroup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
