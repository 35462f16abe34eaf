// Package compose_test checks the compose demo without running Docker: docker-compose validates
// the compose file, Envoy's configuration loads strictly into Envoy's protos, passes real
// Envoy's validation and is envoy/front-proxy.yaml but for the documented adaptations, and the
// files agree with each other (SPIFFE IDs, addresses, the SPIRE socket, pinned images).
package compose_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"
	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/agentauthz/agentauthz/internal/envoyproc"

	// The typed_config types of the Envoy configurations, so that protojson can read them.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/common/matching/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/matcher/action/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/matching/common_inputs/network/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/matching/input_matchers/metadata/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// TestDockerComposeConfig validates docker-compose.yml with docker-compose itself.
func TestDockerComposeConfig(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("docker-compose is not installed; CI installs it (apt-get install docker-compose)")
		}
		t.Skip("docker-compose is not installed (apt-get install docker-compose); not validating docker-compose.yml")
	}
	out, err := exec.Command(bin, "-f", "docker-compose.yml", "config", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config -q: %v\n%s", err, out)
	}
}

// TestEnvoyValidates loads envoy.yaml into Envoy itself (envoy --mode validate, the release the
// compose file runs). It needs no file rewritten: certificates come over SDS, which validate mode
// does not fetch, and the access log is /dev/stdout. Envoy must not warn either (a deprecated
// field is a warning). envoy/ runs the front proxy it is a copy of in real Envoy.
func TestEnvoyValidates(t *testing.T) {
	out := envoyproc.Validate(t, "envoy.yaml")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "][warning][") || strings.Contains(line, "][error][") || strings.Contains(line, "Deprecated") {
			t.Errorf("Envoy warns: %s", line)
		}
	}
}

// loadEnvoy reads an Envoy bootstrap strictly (an unknown field is an error), and validates it
// and every typed_config inside with Envoy's proto rules.
func loadEnvoy(t *testing.T, file string) *bootstrapv3.Bootstrap {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal(readFile(t, file), &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		t.Fatalf("%s does not load as an Envoy bootstrap: %v", file, err)
	}
	validateAll(t, file, b.ProtoReflect())
	return b
}

// validateAll runs the protoc-gen-validate rules on m and on the contents of every Any in it.
func validateAll(t *testing.T, file string, m protoreflect.Message) {
	t.Helper()
	if v, ok := m.Interface().(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Errorf("%s: %s: %v", file, m.Descriptor().FullName(), err)
		}
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			t.Errorf("%s: typed_config %s: %v", file, a.GetTypeUrl(), err)
			return
		}
		validateAll(t, file, inner.ProtoReflect())
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil:
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				validateAll(t, file, v.List().Get(i).Message())
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					validateAll(t, file, mv.Message())
					return true
				})
			}
		default:
			validateAll(t, file, v.Message())
		}
		return true
	})
}

func cluster(t *testing.T, b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("no cluster %s", name)
	return nil
}

func endpoint(c *clusterv3.Cluster) *corev3.Address {
	return c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress()
}

func setEndpoint(c *clusterv3.Cluster, host string, port uint32) {
	sa := endpoint(c).GetSocketAddress()
	sa.Address, sa.PortSpecifier = host, &corev3.SocketAddress_PortValue{PortValue: port}
}

// TestEnvoyIsTheFrontProxy checks that envoy.yaml is envoy/front-proxy.yaml with exactly the
// adaptations its header lists: compose's addresses, and plain HTTP to the demo backends.
func TestEnvoyIsTheFrontProxy(t *testing.T) {
	got := loadEnvoy(t, "envoy.yaml")
	want := loadEnvoy(t, "../envoy/front-proxy.yaml")
	setEndpoint(cluster(t, want, "agentauthz"), "agentauthz", 9001)
	for name, host := range map[string]string{"helpdesk_api": "helpdesk-api", "bi_api": "bi-api"} {
		c := cluster(t, want, name)
		setEndpoint(c, host, 8080)
		c.TransportSocket = nil
	}
	// The helpdesk gRPC service is not part of the compose demo.
	res := want.GetStaticResources()
	res.Clusters = slices.DeleteFunc(res.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == "helpdesk_grpc_api" })
	for _, l := range res.GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue
				}
				rc := hcm.GetRouteConfig()
				rc.VirtualHosts = slices.DeleteFunc(rc.VirtualHosts, func(v *routev3.VirtualHost) bool { return v.GetName() == "helpdesk_grpc" })
				a, err := anypb.New(hcm)
				if err != nil {
					t.Fatal(err)
				}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
			}
		}
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("compose/envoy.yaml differs from envoy/front-proxy.yaml beyond the compose adaptations; "+
			"bring the change over (-front-proxy +compose):\n%s", diff)
	}
}

// compose is the part of docker-compose.yml the wiring test reads.
type compose struct {
	Services map[string]struct {
		Image    string            `yaml:"image"`
		Command  []string          `yaml:"command"`
		Labels   map[string]string `yaml:"labels"`
		User     string            `yaml:"user"`
		Volumes  []string          `yaml:"volumes"`
		Networks []string          `yaml:"networks"`
		Build    *struct {
			Target string `yaml:"target"`
		} `yaml:"build"`
	} `yaml:"services"`
	Networks map[string]any `yaml:"networks"`
	Volumes  map[string]any `yaml:"volumes"`
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flagValue returns the value of -name=VALUE or --name=VALUE in args.
func flagValue(args []string, name string) string {
	for _, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	for i, a := range args {
		if (a == "-"+name || a == "--"+name) && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// TestWiring checks that the files agree: what one names, another provides.
func TestWiring(t *testing.T) {
	var c compose
	if err := yaml.Unmarshal(readFile(t, "docker-compose.yml"), &c); err != nil {
		t.Fatal(err)
	}
	envoy := loadEnvoy(t, "envoy.yaml")
	setup := string(readFile(t, "spire/setup.sh"))
	agentConf := string(readFile(t, "spire/agent.conf"))

	// Every network and named volume a service uses is declared (docker-compose config does
	// not check networks).
	for name, s := range c.Services {
		for _, n := range s.Networks {
			if _, ok := c.Networks[n]; !ok {
				t.Errorf("service %s joins undeclared network %s", name, n)
			}
		}
		for _, v := range s.Volumes {
			if src, _, _ := strings.Cut(v, ":"); !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("service %s mounts undeclared volume %s", name, src)
				}
			}
		}
	}

	// Pinned images, and the versions the README promises.
	pins := map[string]*regexp.Regexp{
		"spire-server": regexp.MustCompile(`^ghcr\.io/spiffe/spire-server:1\.13\.3$`),
		"spire-agent":  regexp.MustCompile(`^ghcr\.io/spiffe/spire-agent:1\.13\.3$`),
		// The Envoy release the tests run (internal/envoyproc.Version).
		"envoy": regexp.MustCompile(`^envoyproxy/envoy:v` + regexp.QuoteMeta(envoyproc.Version) + `$`),
	}
	for name, re := range pins {
		if img := c.Services[name].Image; !re.MatchString(img) {
			t.Errorf("service %s: image %q, want %s", name, img, re)
		}
	}
	if !strings.Contains(string(readFile(t, "spire/Dockerfile")), "FROM ghcr.io/spiffe/spire-server:1.13.3 AS spire") {
		t.Error("spire/Dockerfile does not take spire-server from the pinned official image")
	}

	// Every workload label is registered in SPIRE, with the identity the other files expect.
	register := regexp.MustCompile(`(?m)^register (spiffe://\S+) (\S+)$`)
	ids := map[string]string{} // label value → SPIFFE ID
	for _, m := range register.FindAllStringSubmatch(setup, -1) {
		ids[m[2]] = m[1]
	}
	for name, s := range c.Services {
		if label, ok := s.Labels["org.acme.workload"]; ok && ids[label] == "" {
			t.Errorf("service %s has label org.acme.workload=%s, which spire/setup.sh does not register", name, label)
		}
	}
	want := map[string]string{
		"envoy":          "spiffe://acme.internal/envoy",
		"agentauthz":     "spiffe://acme.internal/agentauthz",
		"helpdesk-agent": "spiffe://acme.internal/agent/helpdesk",
		"bi-agent":       "spiffe://acme.internal/agent/bi",
	}
	for label, id := range want {
		if ids[label] != id {
			t.Errorf("spire/setup.sh registers label %s as %q, want %s", label, ids[label], id)
		}
		if svc, ok := c.Services[label]; !ok || svc.Labels["org.acme.workload"] != label {
			t.Errorf("no service %s labelled org.acme.workload=%s", label, label)
		}
	}
	policy := string(readFile(t, "../internal/demo/policy/acme.yaml"))
	for _, label := range []string{"helpdesk-agent", "bi-agent"} {
		if !strings.Contains(policy, "- id: "+ids[label]+"\n") {
			t.Errorf("%s is not an agent of the demo policy", ids[label])
		}
	}

	// Envoy's own SVID, the agentauthz identity it requires, and who may call agentauthz.
	upstreamTLS := func(name string) *tlsv3.UpstreamTlsContext {
		u := &tlsv3.UpstreamTlsContext{}
		if err := cluster(t, envoy, name).GetTransportSocket().GetTypedConfig().UnmarshalTo(u); err != nil {
			t.Fatalf("cluster %s: %v", name, err)
		}
		return u
	}
	authzTLS := upstreamTLS("agentauthz").GetCommonTlsContext()
	if got := authzTLS.GetTlsCertificateSdsSecretConfigs()[0].GetName(); got != want["envoy"] {
		t.Errorf("Envoy presents %s to agentauthz, but is registered as %s", got, want["envoy"])
	}
	san := authzTLS.GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact()
	if san != want["agentauthz"] {
		t.Errorf("Envoy requires agentauthz to be %s, but it is registered as %s", san, want["agentauthz"])
	}
	authz := c.Services["agentauthz"].Command
	if got := flagValue(authz, "grpc-allowed-clients"); got != want["envoy"] {
		t.Errorf("agentauthz admits %q, want Envoy's ID %s", got, want["envoy"])
	}
	if !slices.Contains(authz, "--grpc-reflection") {
		t.Errorf("agentauthz runs with %q, without --grpc-reflection: grpcurl cannot list the demo's services", authz)
	}
	for _, agent := range []string{"helpdesk-agent", "bi-agent"} {
		if got := flagValue(c.Services[agent].Command, "envoy-id"); got != want["envoy"] {
			t.Errorf("%s trusts %q as Envoy, want %s", agent, got, want["envoy"])
		}
		if got := flagValue(c.Services[agent].Command, "envoy"); got != "https://envoy:8443" {
			t.Errorf("%s calls %q, want Envoy's listener https://envoy:8443", agent, got)
		}
	}
	if l := envoy.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress(); l.GetPortValue() != 8443 {
		t.Errorf("Envoy listens on %d, the agents call 8443", l.GetPortValue())
	}

	// Envoy's clusters reach the services where they listen.
	for clusterName, svc := range map[string]struct{ service, flag, addr string }{
		"agentauthz":   {"agentauthz", "grpc-addr", "0.0.0.0:9001"},
		"helpdesk_api": {"helpdesk-api", "addr", "0.0.0.0:8080"},
		"bi_api":       {"bi-api", "addr", "0.0.0.0:8080"},
	} {
		if got := flagValue(c.Services[svc.service].Command, svc.flag); got != svc.addr {
			t.Errorf("%s listens on %q, want %s", svc.service, got, svc.addr)
		}
		sa := endpoint(cluster(t, envoy, clusterName)).GetSocketAddress()
		if sa.GetAddress() != svc.service || "0.0.0.0:"+strconv.FormatUint(uint64(sa.GetPortValue()), 10) != svc.addr {
			t.Errorf("cluster %s goes to %s:%d, want service %s at %s", clusterName, sa.GetAddress(), sa.GetPortValue(), svc.service, svc.addr)
		}
	}

	// One SPIRE agent socket, mounted where each workload looks for it.
	socket := endpoint(cluster(t, envoy, "spire_agent")).GetPipe().GetPath()
	if !strings.Contains(agentConf, `socket_path = "`+socket+`"`) {
		t.Errorf("the SPIRE agent's socket_path is not %s, where Envoy looks", socket)
	}
	dir := path.Dir(socket)
	for _, name := range []string{"spire-agent", "envoy", "agentauthz", "helpdesk-agent", "bi-agent"} {
		if !slices.ContainsFunc(c.Services[name].Volumes, func(v string) bool { return strings.HasPrefix(v, "spire-agent-socket:"+dir) }) {
			t.Errorf("service %s does not mount spire-agent-socket at %s", name, dir)
		}
	}
	for _, name := range []string{"agentauthz", "helpdesk-agent", "bi-agent"} {
		if got := flagValue(c.Services[name].Command, "spiffe-socket"); got != "unix://"+socket {
			t.Errorf("service %s reads its SVID from %q, want unix://%s", name, got, socket)
		}
	}

	// The Go programs: one Dockerfile target each, static, non-root.
	dockerfile := string(readFile(t, "Dockerfile"))
	for _, must := range []string{"FROM golang:1.26 AS build", "CGO_ENABLED=0", "FROM gcr.io/distroless/static-debian12:nonroot AS base", "USER 65532:65532"} {
		if !strings.Contains(dockerfile, must) {
			t.Errorf("Dockerfile lacks %q", must)
		}
	}
	for name, s := range c.Services {
		if s.Build != nil && s.Build.Target != "" && !strings.Contains(dockerfile, "FROM base AS "+s.Build.Target+"\n") {
			t.Errorf("service %s builds target %s, which the Dockerfile does not define on the non-root base", name, s.Build.Target)
		}
		if s.User == "0:0" && name != "spire-agent" {
			t.Errorf("service %s runs as root", name)
		}
	}
}
