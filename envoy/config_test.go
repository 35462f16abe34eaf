package envoy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matchingv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/matching/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/envoyproc"

	// Every type a typed_config in these files names must be in the global registry, or
	// protojson cannot read the Any. The packages used by name above register themselves; these
	// are the remaining ones.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
)

// policyDefaultMaxBytes is a policy body's max_bytes when it sets none (documented on
// Body.max_bytes in proto/agentauthz/policy/v1/policy.proto).
const policyDefaultMaxBytes = 65536

// Header and check size limits.
const (
	// envoyDefaultMaxRequestHeadersKB and envoyDefaultMaxHeadersCount are Envoy's defaults for
	// max_request_headers_kb and max_headers_count; a request over either gets 431 before any
	// check.
	envoyDefaultMaxRequestHeadersKB = 60
	envoyDefaultMaxHeadersCount     = 100
	// maxRequestHeadersKB bounds max_request_headers_kb: agents send a few headers, and each
	// check carries them all.
	maxRequestHeadersKB = 96
	// agentauthzMaxCheckBytes is the largest CheckRequest agentauthz receives: grpc-go's default
	// receive limit, which internal/server keeps. checkOverhead is the rest of a check besides
	// headers and body (attributes, framing), generously.
	agentauthzMaxCheckBytes = 4 << 20
	checkOverhead           = 64 << 10
)

// TestConfigs checks every Envoy configuration in this directory.
func TestConfigs(t *testing.T) {
	files := configFiles(t)
	for _, want := range []string{"front-proxy.yaml", "sidecar.yaml", "mcp.yaml"} {
		if !contains(files, want) {
			t.Errorf("%s is missing", want)
		}
	}
	limits := limitsFor(t)
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			for _, err := range check(f, limits) {
				t.Error(err)
			}
		})
	}
}

// TestBroken checks that every deliberately broken configuration under testdata/broken fails
// with exactly one problem, the one its "# want:" line names: the copies are otherwise sound, so
// each proves its check catches what it is meant to.
func TestBroken(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "broken", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("found %d broken configurations, want at least 5", len(files))
	}
	limits := limitsFor(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want := wantLine(t, f)
			errs := check(f, limits)
			switch {
			case len(errs) == 0:
				t.Fatalf("passed; want a failure containing %q", want)
			case len(errs) > 1:
				t.Errorf("failed %d ways, want exactly one (%q):\n%s", len(errs), want, joinErrors(errs))
			}
			if !strings.Contains(errs[0].Error(), want) {
				t.Errorf("failed with\n\t%v\nwant it to contain %q", errs[0], want)
			}
		})
	}
}

// TestEnvoyValidates loads every configuration here into Envoy itself (envoy --mode validate,
// Envoy envoyproc.Version). Validate mode builds everything Envoy would start with, extensions,
// clusters and listeners included, and opens the files a configuration names (certificate and
// key files, file access logs), but binds no port, resolves no name and connects nowhere: SDS
// secrets are not fetched and unix socket paths need not exist. These configurations take every
// certificate over SDS and log to /dev/stdout, so they validate as shipped. Envoy must not warn
// either (a deprecated field is a warning).
func TestEnvoyValidates(t *testing.T) {
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) {
			out := envoyproc.Validate(t, f)
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "][warning][") || strings.Contains(line, "][error][") || strings.Contains(line, "Deprecated") {
					t.Errorf("Envoy warns: %s", line)
				}
			}
		})
	}
}

// TestEnvoyValidatesBroken runs Envoy's validation on the broken copies: Envoy refuses the ones
// broken at the proto level, as check does, and accepts every one whose defect is a weakened
// safety setting, which only check catches.
func TestEnvoyValidatesBroken(t *testing.T) {
	envoyRefuses := map[string]string{ // file → what Envoy's error says
		"bad-enum.yaml":                "SANITISE",
		"hcm-missing-stat-prefix.yaml": "StatPrefix",
		"unknown-field.yaml":           "validate_mutation",
	}
	files, err := filepath.Glob(filepath.Join("testdata", "broken", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, err := envoyproc.TryValidate(t, f)
			want, refuse := envoyRefuses[filepath.Base(f)]
			switch {
			case refuse && err == nil:
				t.Errorf("Envoy accepted it; want a refusal naming %q", want)
			case refuse && !strings.Contains(out, want):
				t.Errorf("Envoy refused it without naming %q:\n%s", want, out)
			case !refuse && err != nil:
				t.Errorf("Envoy refused a configuration broken only in a safety setting: %v\n%s", err, out)
			}
		})
	}
}

// TestAnyValidationIsNeeded shows why check unpacks every Any: the generated ValidateAll of the
// bootstrap does not look inside typed_config, so an HTTP connection manager without its
// required stat_prefix passes it.
func TestAnyValidationIsNeeded(t *testing.T) {
	f := filepath.Join("testdata", "broken", "hcm-missing-stat-prefix.yaml")
	boot, err := loadBootstrap(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := boot.ValidateAll(); err != nil {
		t.Fatalf("the bootstrap's own ValidateAll already fails, so the example shows nothing: %v", err)
	}
	if _, errs := validateDeep(boot); len(errs) == 0 {
		t.Fatal("validation inside typed_config passed an HTTP connection manager without stat_prefix")
	}
}

// TestStrictYAML checks the YAML reading itself: what Envoy would read differently, or not at
// all, is refused.
func TestStrictYAML(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"duplicate key", "node: {id: a}\nnode: {id: b}\n", "already defined"},
		{"second document", "node: {id: a}\n---\nnode: {id: b}\n", "second YAML document"},
		{"unknown top-level field", "nodes: {id: a}\n", `unknown field "nodes"`},
		{"non-string key", "1: a\n", "not a string"},
		{"unresolvable type", "static_resources:\n  listeners:\n  - name: l\n    listener_filters:\n    - name: x\n      typed_config: {\"@type\": type.googleapis.com/no.such.Type}\n", "no.such.Type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(f, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadBootstrap(f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// configFiles lists every *.yaml under this directory except testdata and the directories of
// other modules (kubernetes: Kubernetes manifests, tested in their own module, which checks that
// its copy of sidecar.yaml is this one).
func configFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.IsDir() && path != "." {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// wantLine reads the "# want: ..." line at the top of a broken configuration.
func wantLine(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "#") {
			break
		}
		if w, ok := strings.CutPrefix(line, "# want: "); ok && strings.TrimSpace(w) != "" {
			return strings.TrimSpace(w)
		}
	}
	t.Fatalf("%s has no \"# want: <expected failure>\" line in its leading comment", path)
	return ""
}

// largestPolicyBody is the largest body any route of the policy in dir accepts: Envoy's
// max_request_bytes must be at least this, or Envoy refuses bodies the policy allows.
func largestPolicyBody(t *testing.T, dir string) uint32 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var largest uint32
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.yaml") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		visitBodies(doc, func(body map[string]any) {
			found++
			n := uint32(policyDefaultMaxBytes)
			switch v := body["max_bytes"].(type) {
			case nil:
			case int:
				n = uint32(v)
			default:
				t.Errorf("%s: body max_bytes %v is not an integer", f, v)
			}
			largest = max(largest, n)
		})
	}
	if found == 0 {
		t.Fatalf("no route with a body in the policy in %s; is it still there?", dir)
	}
	return largest
}

func visitBodies(v any, fn func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if b, ok := e.(map[string]any); ok && k == "body" {
				fn(b)
				continue
			}
			visitBodies(e, fn)
		}
	case []any:
		for _, e := range v {
			visitBodies(e, fn)
		}
	}
}

// checkLimits are the bounds a configuration is held to.
type checkLimits struct {
	// minMaxRequestBytes is the largest body the policy accepts.
	minMaxRequestBytes uint32
	// minTimeout is agentauthz's own check deadline; Envoy's must be longer.
	minTimeout time.Duration
}

// limitsFor derives the bounds from agentauthz itself: the demo policy these configurations
// front, and agentauthz's default --check-timeout.
func limitsFor(t *testing.T) checkLimits {
	t.Helper()
	return checkLimits{
		minMaxRequestBytes: largestPolicyBody(t, filepath.Join("..", "internal", "demo", "policy")),
		minTimeout:         extauthz.DefaultTimeout,
	}
}

// check loads, validates and checks one configuration, returning every problem found.
func check(path string, limits checkLimits) []error {
	boot, err := loadBootstrap(path)
	if err != nil {
		return []error{err}
	}
	nodes, errs := validateDeep(boot)
	errs = append(errs, checkSafety(boot, nodes, limits)...)
	return errs
}

// loadBootstrap reads an Envoy bootstrap YAML file as Envoy would, but strictly: YAML to JSON,
// then protojson with unknown fields refused and every Any resolved from the global registry.
func loadBootstrap(path string) (*bootstrapv3.Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("load %s: YAML: %w", path, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("load %s: a second YAML document (or a YAML error after the first: %v); Envoy reads one", path, err)
	}
	jv, err := jsonValue(doc, "")
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	js, err := json.Marshal(jv)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	boot := &bootstrapv3.Bootstrap{}
	opts := protojson.UnmarshalOptions{DiscardUnknown: false, Resolver: protoregistry.GlobalTypes}
	if err := opts.Unmarshal(js, boot); err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return boot, nil
}

// jsonValue turns a decoded YAML value into one encoding/json writes: mappings must have string
// keys, as Envoy's YAML does.
func jsonValue(v any, at string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			je, err := jsonValue(e, at+"."+k)
			if err != nil {
				return nil, err
			}
			out[k] = je
		}
		return out, nil
	case map[any]any:
		for k := range v {
			if _, ok := k.(string); !ok {
				return nil, fmt.Errorf("%s: mapping key %v is not a string", at, k)
			}
		}
		return nil, fmt.Errorf("%s: mapping with mixed keys", at)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			je, err := jsonValue(e, fmt.Sprintf("%s[%d]", at, i))
			if err != nil {
				return nil, err
			}
			out[i] = je
		}
		return out, nil
	default:
		return v, nil
	}
}

// node is one message of the configuration with where it is.
type node struct {
	path string
	msg  proto.Message
}

type validator interface{ ValidateAll() error }

// validateDeep runs the generated ValidateAll on the bootstrap, and on the message inside every
// google.protobuf.Any below it, recursively: ValidateAll does not unpack Anys, so without this a
// typed_config (the HTTP connection manager, ext_authz, TLS contexts, ...) would go unchecked.
// It returns every message of the tree, Any contents included, for the safety checks.
func validateDeep(boot *bootstrapv3.Bootstrap) ([]node, []error) {
	var nodes []node
	var errs []error
	var visit func(path string, m proto.Message)
	visit = func(path string, m proto.Message) {
		if v, ok := m.(validator); ok {
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, fmt.Errorf("validate %s (%s): %w", orRoot(path), m.ProtoReflect().Descriptor().FullName(), err))
			}
		}
		walk(m.ProtoReflect(), path, func(p string, rm protoreflect.Message) bool {
			nodes = append(nodes, node{p, rm.Interface()})
			a, ok := rm.Interface().(*anypb.Any)
			if !ok {
				return true
			}
			inner, err := a.UnmarshalNew()
			if err != nil {
				errs = append(errs, fmt.Errorf("validate %s: cannot unpack %s: %w", p, a.GetTypeUrl(), err))
				return false
			}
			visit(p+"<"+string(inner.ProtoReflect().Descriptor().Name())+">", inner)
			return false
		})
	}
	visit("", boot)
	return nodes, errs
}

func orRoot(p string) string {
	if p == "" {
		return "bootstrap"
	}
	return p
}

// walk calls visit for m and, while visit returns true, for every message below it.
func walk(m protoreflect.Message, path string, visit func(string, protoreflect.Message) bool) {
	if !visit(path, m) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := string(fd.Name())
		if path != "" {
			p = path + "." + p
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				walk(mv.Message(), fmt.Sprintf("%s[%q]", p, k.String()), visit)
				return true
			})
		case fd.IsList():
			if fd.Message() == nil {
				return true
			}
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), visit)
			}
		case fd.Message() != nil:
			walk(v.Message(), p, visit)
		}
		return true
	})
}

// checkSafety checks the settings agentauthz's guarantees depend on.
func checkSafety(boot *bootstrapv3.Bootstrap, nodes []node, limits checkLimits) []error {
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("safety: %s: %s", path, fmt.Sprintf(format, args...)))
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range boot.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}

	var authzClusters []string
	var largestBuffer uint32
	nAuthz, nHCM := 0, 0
	for _, n := range nodes {
		switch m := n.msg.(type) {
		case *extauthzv3.ExtAuthz:
			nAuthz++
			checkExtAuthz(n.path, m, limits, fail)
			largestBuffer = max(largestBuffer, m.GetWithRequestBody().GetMaxRequestBytes())
			if c := m.GetGrpcService().GetEnvoyGrpc().GetClusterName(); c != "" {
				authzClusters = append(authzClusters, c)
			}
		case *extauthzv3.ExtAuthzPerRoute:
			if m.GetDisabled() {
				fail(n.path, "ext_authz is disabled for a route: agents' requests there would go unchecked")
			}
			if cs := m.GetCheckSettings(); cs != nil {
				if cs.GetDisableRequestBodyBuffering() {
					fail(n.path, "a route disables request body buffering: agentauthz could not check bodies there")
				}
				if wb := cs.GetWithRequestBody(); wb != nil {
					checkBody(n.path+".check_settings", wb, limits, fail)
				}
				if gs := cs.GetGrpcService(); gs != nil {
					checkGrpcService(n.path+".check_settings", gs, limits, fail)
				}
				if cs.GetHttpService() != nil {
					fail(n.path, "a route sends checks to an HTTP service; agentauthz speaks gRPC")
				}
			}
		case *hcmv3.HttpConnectionManager:
			nHCM++
			checkHCM(n.path, m, fail)
		case *extprocv3.ExternalProcessor:
			checkExtProc(n.path, m, fail)
		case *matchingv3.ExtensionWithMatcher:
			checkExtProcMatcher(n.path, m, fail)
		case *tlsv3.UpstreamTlsContext:
			checkTLSVersions(n.path, m.GetCommonTlsContext().GetTlsParams(), "upstream", tlsv3.TlsParameters_TLSv1_2, fail)
		case *tlsv3.DownstreamTlsContext:
			checkTLSVersions(n.path, m.GetCommonTlsContext().GetTlsParams(), "downstream", tlsv3.TlsParameters_TLSv1_3, fail)
		case *corev3.GrpcService_EnvoyGrpc:
			if clusters[m.GetClusterName()] == nil {
				fail(n.path, "gRPC service cluster %q is not defined", m.GetClusterName())
			}
		case *routev3.RouteAction:
			if c := m.GetCluster(); c != "" && clusters[c] == nil {
				fail(n.path, "route cluster %q is not defined", c)
			}
		}
	}
	if nAuthz == 0 {
		fail("bootstrap", "no ext_authz filter: nothing asks agentauthz")
	}
	if nHCM == 0 {
		fail("bootstrap", "no HTTP connection manager")
	}

	for i, l := range boot.GetStaticResources().GetListeners() {
		lp := fmt.Sprintf("static_resources.listeners[%d] (%s)", i, l.GetName())
		checkListener(lp, l, fail)
		if b := l.GetPerConnectionBufferLimitBytes(); b != nil && b.GetValue() < largestBuffer {
			fail(lp, "per_connection_buffer_limit_bytes %d is below ext_authz max_request_bytes %d: bodies the policy accepts would be refused", b.GetValue(), largestBuffer)
		}
	}
	for _, name := range authzClusters {
		if c := clusters[name]; c != nil {
			checkAuthzCluster("cluster "+name, c, fail)
		}
	}
	return errs
}

type failFunc func(path, format string, args ...any)

func checkExtAuthz(p string, m *extauthzv3.ExtAuthz, limits checkLimits, fail failFunc) {
	if m.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		fail(p, "transport_api_version is %v, want V3: agentauthz serves envoy.service.auth.v3", m.GetTransportApiVersion())
	}
	if m.GetFailureModeAllow() {
		fail(p, "failure_mode_allow is true: requests would be forwarded unchecked whenever agentauthz cannot be reached")
	}
	if m.GetShadowMode() {
		fail(p, "shadow_mode is true: agentauthz's denials would not be enforced")
	}
	if m.GetFilterEnabled() != nil || m.GetFilterEnabledMetadata() != nil {
		fail(p, "filter_enabled or filter_enabled_metadata is set: some requests would skip the check")
	}
	if len(m.GetAllowedHeaders().GetPatterns()) > 0 || len(m.GetDisallowedHeaders().GetPatterns()) > 0 {
		fail(p, "allowed_headers or disallowed_headers is set: agentauthz must see every header to refuse overrides and encodings")
	}
	if m.GetStatusOnError().GetCode() != typev3.StatusCode_ServiceUnavailable {
		fail(p, "status_on_error is %v, want ServiceUnavailable (503)", m.GetStatusOnError().GetCode())
	}
	if !m.GetValidateMutations() {
		fail(p, "validate_mutations is false: invalid header mutations would reach the upstream")
	}
	if m.GetHttpService() != nil {
		fail(p, "http_service is set; agentauthz speaks gRPC")
	}
	gs := m.GetGrpcService()
	if gs == nil {
		fail(p, "no grpc_service")
	} else {
		checkGrpcService(p, gs, limits, fail)
	}
	checkBody(p, m.GetWithRequestBody(), limits, fail)
}

func checkBody(p string, wb *extauthzv3.BufferSettings, limits checkLimits, fail failFunc) {
	switch {
	case wb == nil:
		fail(p, "with_request_body is not set: agentauthz could not check bodies")
	case wb.GetMaxRequestBytes() == 0:
		fail(p, "with_request_body.max_request_bytes is 0")
	default:
		if wb.GetMaxRequestBytes() < limits.minMaxRequestBytes {
			fail(p, "with_request_body.max_request_bytes %d is below the policy's largest body max_bytes %d: Envoy would refuse bodies the policy accepts", wb.GetMaxRequestBytes(), limits.minMaxRequestBytes)
		}
		if wb.GetAllowPartialMessage() {
			fail(p, "with_request_body.allow_partial_message is true: the unchecked tail of a long body would reach the upstream")
		}
		if !wb.GetPackAsBytes() {
			fail(p, "with_request_body.pack_as_bytes is false: binary bodies would be mangled into a UTF-8 string")
		}
	}
}

func checkGrpcService(p string, gs *corev3.GrpcService, limits checkLimits, fail failFunc) {
	if gs.GetEnvoyGrpc() == nil {
		fail(p, "grpc_service is not envoy_grpc")
	}
	switch to := gs.GetTimeout(); {
	case to == nil:
		fail(p, "grpc_service timeout is not set")
	case to.AsDuration() <= limits.minTimeout:
		fail(p, "grpc_service timeout %v is not above agentauthz's --check-timeout default %v: Envoy would give up before agentauthz answers its own deadline", to.AsDuration(), limits.minTimeout)
	}
}

func checkHCM(p string, m *hcmv3.HttpConnectionManager, fail failFunc) {
	switch m.GetForwardClientCertDetails() {
	case hcmv3.HttpConnectionManager_SANITIZE, hcmv3.HttpConnectionManager_SANITIZE_SET:
	default:
		fail(p, "forward_client_cert_details is %v, want SANITIZE or SANITIZE_SET: an agent-supplied X-Forwarded-Client-Cert would be forwarded", m.GetForwardClientCertDetails())
	}
	if m.GetForwardClientCertMatcher() != nil {
		fail(p, "forward_client_cert_matcher is set: it overrides forward_client_cert_details per request")
	}
	if !m.GetUseRemoteAddress().GetValue() {
		fail(p, "use_remote_address is not true: Envoy would believe agents' X-Forwarded-For")
	}
	if nv := m.GetNormalizePath(); nv == nil || nv.GetValue() {
		fail(p, "normalize_path is not explicitly false: agentauthz would check a path other than the one the agent sent")
	}
	if m.GetMergeSlashes() {
		fail(p, "merge_slashes is true: agentauthz would check a path other than the one the agent sent")
	}
	if a := m.GetPathWithEscapedSlashesAction(); a != hcmv3.HttpConnectionManager_KEEP_UNCHANGED {
		fail(p, "path_with_escaped_slashes_action is %v, want KEEP_UNCHANGED", a)
	}
	if m.GetPathNormalizationOptions() != nil {
		fail(p, "path_normalization_options is set")
	}
	if m.GetTypedHeaderValidationConfig() != nil {
		fail(p, "typed_header_validation_config is set: header validation normalises paths and ignores the settings above")
	}
	if a := m.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a != corev3.HttpProtocolOptions_REJECT_REQUEST {
		fail(p, "common_http_protocol_options.headers_with_underscores_action is %v, want REJECT_REQUEST", a)
	}
	if m.GetAppendXForwardedPort() {
		fail(p, "append_x_forwarded_port is true: Envoy would set x-forwarded-port before the check, and agentauthz removes it as a forwarded-context header the agent sent (policy.ForwardedHeaders)")
	}
	if !m.GetStripAnyHostPort() {
		fail(p, "strip_any_host_port is not true: agentauthz matches host names without a port, and would refuse every agent that sends one")
	}
	// HTTP/1.1 framing that two parsers could read differently is refused by Envoy (400, 426),
	// as envoy/DIFFERENTIAL.md shows; these options would let it through.
	if h1 := m.GetHttpProtocolOptions(); h1.GetAllowChunkedLength() {
		fail(p, "http_protocol_options.allow_chunked_length is true: a request with both content-length and transfer-encoding: chunked would be forwarded")
	} else if h1.GetAcceptHttp_10() {
		fail(p, "http_protocol_options.accept_http_10 is true: HTTP/1.0 requests, with their own reading of Host and bodies, would be accepted")
	}
	if m.GetHttp2ProtocolOptions().GetAllowConnect() {
		fail(p, "http2_protocol_options.allow_connect is true: CONNECT tunnels carry bytes no check reads")
	}
	// Header limits. Every header travels in every check; the check, headers and buffered body
	// together, must fit the gRPC message agentauthz receives.
	headersKB := uint32(envoyDefaultMaxRequestHeadersKB)
	if v := m.GetMaxRequestHeadersKb(); v != nil {
		headersKB = v.GetValue()
	}
	if headersKB > maxRequestHeadersKB {
		fail(p, "max_request_headers_kb %d is above %d: every header travels in every check", headersKB, maxRequestHeadersKB)
	}
	if n := m.GetCommonHttpProtocolOptions().GetMaxHeadersCount(); n != nil && n.GetValue() > envoyDefaultMaxHeadersCount {
		fail(p, "common_http_protocol_options.max_headers_count %d is above Envoy's default %d: every header travels in every check", n.GetValue(), envoyDefaultMaxHeadersCount)
	}
	for _, f := range m.GetHttpFilters() {
		if az := (&extauthzv3.ExtAuthz{}); f.GetTypedConfig().UnmarshalTo(az) == nil {
			if total := uint64(headersKB)*1024 + uint64(az.GetWithRequestBody().GetMaxRequestBytes()); total+checkOverhead > agentauthzMaxCheckBytes {
				fail(p, "max_request_headers_kb and with_request_body.max_request_bytes allow a check of %d bytes, over the %d agentauthz receives", total+checkOverhead, agentauthzMaxCheckBytes)
			}
		}
	}
	// ext_authz must run, and before the router; the router must be last. ext_proc, where it
	// runs, comes after ext_authz, whose answer its matcher and agentauthz read.
	authz, router, proc := -1, -1, -1
	filters := m.GetHttpFilters()
	for i, f := range filters {
		inner, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			continue // reported by validateDeep
		}
		switch inner := inner.(type) {
		case *extauthzv3.ExtAuthz:
			if authz < 0 {
				authz = i
			}
			if f.GetDisabled() || f.GetIsOptional() {
				fail(fmt.Sprintf("%s.http_filters[%d]", p, i), "the ext_authz filter is disabled or optional")
			}
		case *routerv3.Router:
			router = i
		case *extprocv3.ExternalProcessor:
			proc = i
		case *matchingv3.ExtensionWithMatcher:
			if inner.GetExtensionConfig().GetTypedConfig().MessageIs(&extprocv3.ExternalProcessor{}) {
				proc = i
			}
		}
	}
	if proc >= 0 && proc < authz {
		fail(p, "ext_proc comes before ext_authz: ext_authz's answer (the agent, the MCP method) is not there when ext_proc's matcher reads it")
	}
	switch {
	case authz < 0:
		fail(p, "no ext_authz filter in http_filters: requests would reach the upstream unchecked")
	case router < 0:
		fail(p, "no router filter")
	case authz > router:
		fail(p, "ext_authz comes after the router: requests would be forwarded before the check")
	case router != len(filters)-1:
		fail(p, "the router is not the last HTTP filter")
	}
}

func checkListener(p string, l *listenerv3.Listener, fail failFunc) {
	chains := l.GetFilterChains()
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(chains[:len(chains):len(chains)], dc)
	}
	if len(chains) == 0 {
		fail(p, "no filter chains")
	}
	for i, fc := range chains {
		cp := fmt.Sprintf("%s.filter_chains[%d]", p, i)
		ts := fc.GetTransportSocket()
		if ts == nil {
			fail(cp, "no transport socket: agents would connect without mTLS, and without a SPIFFE ID")
			continue
		}
		inner, err := ts.GetTypedConfig().UnmarshalNew()
		if err != nil {
			continue // reported by validateDeep
		}
		dtc, ok := inner.(*tlsv3.DownstreamTlsContext)
		if !ok {
			fail(cp, "transport socket is %T, not a DownstreamTlsContext", inner)
			continue
		}
		if names := fc.GetFilterChainMatch().GetServerNames(); len(names) > 0 && !dtc.GetRequireClientCertificate().GetValue() {
			// The chain of hosts that accept OAuth access tokens: a certificate is optional, but
			// one presented is verified against the trust bundle, and the chain is chosen by SNI,
			// which only the TLS inspector reads.
			ctc := dtc.GetCommonTlsContext()
			if ctc.GetValidationContextSdsSecretConfig() == nil && ctc.GetCombinedValidationContext().GetValidationContextSdsSecretConfig() == nil {
				fail(cp, "a chain with optional client certificates verifies none against the trust bundle: any certificate would name an agent")
			}
			if !hasListenerFilter(l, "envoy.filters.listener.tls_inspector") {
				fail(cp, "server_names without the TLS inspector listener filter: the chain is never chosen")
			}
			continue
		}
		if !dtc.GetRequireClientCertificate().GetValue() {
			fail(cp, "require_client_certificate is not true: agents without a certificate (and a SPIFFE ID) would be let in")
		}
		if !hasURISANMatcher(dtc.GetCommonTlsContext(), false) {
			fail(cp, "no match_typed_subject_alt_names URI matcher: any certificate of the trust domain would be accepted as an agent")
		}
	}
}

// hasListenerFilter reports whether the listener runs the listener filter name.
func hasListenerFilter(l *listenerv3.Listener, name string) bool {
	for _, f := range l.GetListenerFilters() {
		if f.GetName() == name {
			return true
		}
	}
	return false
}

// checkTLSVersions checks that a TLS context can negotiate some version: Envoy's defaults are a
// TLSv1_2 minimum, and a TLSv1_2 maximum for upstream (client) connections, TLSv1_3 for
// downstream ones. A TLSv1_3 minimum without a TLSv1_3 maximum on an upstream connection
// passes Envoy's own validation, but every handshake then fails (NO_SUPPORTED_VERSIONS_ENABLED),
// as real Envoy shows (TestRealEnvoyCheckRequest).
func checkTLSVersions(p string, tp *tlsv3.TlsParameters, side string, defaultMax tlsv3.TlsParameters_TlsProtocol, fail failFunc) {
	lo, hi := tp.GetTlsMinimumProtocolVersion(), tp.GetTlsMaximumProtocolVersion()
	if lo == tlsv3.TlsParameters_TLS_AUTO {
		lo = tlsv3.TlsParameters_TLSv1_2
	}
	if hi == tlsv3.TlsParameters_TLS_AUTO {
		hi = defaultMax
	}
	if lo > hi {
		fail(p, "tls_minimum_protocol_version %v is above the maximum %v (Envoy's default for %s connections unless tls_maximum_protocol_version is set): every handshake would fail", lo, hi, side)
	}
}

// checkAuthzCluster checks the cluster ext_authz calls: HTTP/2 (gRPC), and mTLS with
// agentauthz's exact SPIFFE ID unless it is reached on a unix socket or loopback.
func checkAuthzCluster(p string, c *clusterv3.Cluster, fail failFunc) {
	h2 := false
	if a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a != nil {
		if inner, err := a.UnmarshalNew(); err == nil {
			if hpo, ok := inner.(*upstreamhttpv3.HttpProtocolOptions); ok && hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil {
				h2 = true
			}
		}
	}
	if !h2 {
		fail(p, "not explicitly HTTP/2: gRPC needs it")
	}
	local := true
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			addr := lb.GetEndpoint().GetAddress()
			if addr.GetPipe() != nil {
				continue
			}
			host := addr.GetSocketAddress().GetAddress()
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				local = false
			}
		}
	}
	if local {
		return
	}
	ts := c.GetTransportSocket()
	var utc *tlsv3.UpstreamTlsContext
	if ts != nil {
		if inner, err := ts.GetTypedConfig().UnmarshalNew(); err == nil {
			utc, _ = inner.(*tlsv3.UpstreamTlsContext)
		}
	}
	switch {
	case utc == nil:
		fail(p, "agentauthz is reached over the network without TLS: anyone on the path could answer checks")
	case len(utc.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()) == 0 && len(utc.GetCommonTlsContext().GetTlsCertificates()) == 0:
		fail(p, "no client certificate: agentauthz admits only Envoy's SPIFFE ID")
	case !hasURISANMatcher(utc.GetCommonTlsContext(), true):
		fail(p, "no exact URI SAN matcher for agentauthz's SPIFFE ID: any workload of the trust domain could answer checks")
	}
}

// hasURISANMatcher reports whether the TLS context restricts the peer's URI SAN, to an exact
// SPIFFE ID when exact is set.
func hasURISANMatcher(ctc *tlsv3.CommonTlsContext, exact bool) bool {
	vcs := []*tlsv3.CertificateValidationContext{
		ctc.GetValidationContext(),
		ctc.GetCombinedValidationContext().GetDefaultValidationContext(),
	}
	for _, vc := range vcs {
		for _, san := range vc.GetMatchTypedSubjectAltNames() {
			if san.GetSanType() != tlsv3.SubjectAltNameMatcher_URI {
				continue
			}
			sm := san.GetMatcher()
			switch mp := sm.GetMatchPattern().(type) {
			case *matcherv3.StringMatcher_Exact:
				if strings.HasPrefix(mp.Exact, "spiffe://") && !sm.GetIgnoreCase() {
					return true
				}
			case *matcherv3.StringMatcher_Prefix:
				if !exact && strings.HasPrefix(mp.Prefix, "spiffe://") && strings.HasSuffix(mp.Prefix, "/") && !sm.GetIgnoreCase() {
					return true
				}
			}
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func joinErrors(errs []error) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("\t")
		b.WriteString(e.Error())
		b.WriteString("\n")
	}
	return b.String()
}
