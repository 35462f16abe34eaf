package kubernetes_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	istioapi "istio.io/api/security/v1beta1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwapiv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/agentauthz/agentauthz/internal/engine"
)

// The smallest body limit an Envoy in front of agentauthz may have: the policy's default
// max_bytes (envoy/README.md).
const minRequestBytes = 65536

func readObjects(t *testing.T, file string) []runtime.Object {
	t.Helper()
	data, err := os.ReadFile(filepath.FromSlash(file))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return objs
}

// chartService renders the chart with a values file of this directory and returns its Service
// and the pods' labels.
func chartService(t *testing.T, file string) (*corev1.Service, labels.Set) {
	t.Helper()
	objs := mustRender(t, values(t, file, shared))
	return only[*corev1.Service](t, objs, 1)[0], labels.Set(only[*appsv1.Deployment](t, objs, 1)[0].Spec.Template.Labels)
}

// TestIstio: the mesh configuration declares agentauthz as a gRPC ext_authz provider that fails
// closed, sends the whole body as bytes, waits longer than agentauthz's check timeout and points
// at the chart's Service; path normalisation is off, headers with underscores refused, slashes
// kept as sent; the API's AuthorizationPolicy sends every
// request to that provider, and nothing removes an agent's access token before it; agentauthz
// admits only mTLS, and Check only from the API.
func TestIstio(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("istio", "mesh-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mesh, err := decodeMeshConfig(data)
	if err != nil {
		t.Fatalf("mesh-config.yaml: %v", err)
	}
	if len(mesh.GetExtensionProviders()) != 1 {
		t.Fatalf("%d extension providers, want agentauthz's", len(mesh.GetExtensionProviders()))
	}
	provider := mesh.GetExtensionProviders()[0]
	g := provider.GetEnvoyExtAuthzGrpc()
	if g == nil {
		t.Fatalf("provider %s is not envoyExtAuthzGrpc", provider.GetName())
	}
	if g.GetFailOpen() || g.GetStatusOnError() != "503" {
		t.Errorf("failOpen %v, statusOnError %q: want fail closed with 503", g.GetFailOpen(), g.GetStatusOnError())
	}
	if g.GetTimeout().AsDuration() <= engine.DefaultTimeout {
		t.Errorf("timeout %v is not above agentauthz's check timeout %v", g.GetTimeout().AsDuration(), engine.DefaultTimeout)
	}
	if b := g.GetIncludeRequestBodyInCheck(); b == nil || b.GetAllowPartialMessage() || !b.GetPackAsBytes() || b.GetMaxRequestBytes() < minRequestBytes {
		t.Errorf("includeRequestBodyInCheck %v: want the whole body (at least %d bytes), as bytes, never partial", b, minRequestBytes)
	}
	if mesh.GetPathNormalization().GetNormalization() != meshv1alpha1.MeshConfig_ProxyPathNormalization_NONE {
		t.Errorf("pathNormalization %v, want NONE", mesh.GetPathNormalization())
	}
	cs := mesh.GetDefaultConfig().GetConnectionSettings()
	if cs.GetHttpHeadersWithUnderscoresAction() != meshv1alpha1.ProxyConfig_ConnectionSettings_HEADERS_WITH_UNDERSCORES_REJECT_REQUEST ||
		cs.GetHttpMergeSlashes() == nil || cs.GetHttpMergeSlashes().GetValue() ||
		cs.GetHttpPathWithEscapedSlashesAction() != meshv1alpha1.ProxyConfig_ConnectionSettings_KEEP_UNCHANGED {
		t.Errorf("connectionSettings %v: want underscores refused, slashes neither merged nor unescaped", cs)
	}
	svc, podLabels := chartService(t, "istio/values-istio.yaml")
	if want := svc.Name + "." + releaseNamespace + ".svc.cluster.local"; g.GetService() != want {
		t.Errorf("provider service %q, want the chart's %q", g.GetService(), want)
	}
	grpcPort := servicePort(t, svc, "grpc")
	if g.GetPort() != uint32(grpcPort) {
		t.Errorf("provider port %d, want the chart's gRPC port %d", g.GetPort(), grpcPort)
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Error("in the mesh the Service should not be headless: the mesh balances requests itself")
	}

	objs := readObjects(t, "istio/authorization-policy.yaml")
	ap := only[*istiosecurity.AuthorizationPolicy](t, objs, 1)[0]
	if ap.Spec.GetAction() != istioapi.AuthorizationPolicy_CUSTOM || ap.Spec.GetProvider().GetName() != provider.GetName() {
		t.Errorf("action %v, provider %q; want CUSTOM with %q", ap.Spec.GetAction(), ap.Spec.GetProvider().GetName(), provider.GetName())
	}
	// Exactly one rule, and empty: every request of the selected pods is checked.
	if rules := ap.Spec.GetRules(); len(rules) != 1 || len(rules[0].GetFrom())+len(rules[0].GetTo())+len(rules[0].GetWhen()) != 0 {
		t.Errorf("rules %v, want one empty rule (every request)", rules)
	}
	pa := only[*istiosecurity.PeerAuthentication](t, objs, 1)[0]
	if pa.Spec.GetMtls().GetMode() != istioapi.PeerAuthentication_MutualTLS_STRICT ||
		!slices.Equal(mapKeys(pa.Spec.GetSelector().GetMatchLabels()), mapKeys(ap.Spec.GetSelector().GetMatchLabels())) {
		t.Errorf("the API's PeerAuthentication %v, want STRICT for the same pods as the AuthorizationPolicy", &pa.Spec)
	}

	// An agent's access token reaches agentauthz: the gRPC provider sends every header (it has
	// no list to leave one out), and no RequestAuthentication removes Authorization before the
	// check, as a jwtRules entry does unless forwardOriginalToken.
	for _, f := range []string{"istio/authorization-policy.yaml", "istio/agentauthz-access.yaml"} {
		for _, o := range readObjects(t, f) {
			if ra, ok := o.(*istiosecurity.RequestAuthentication); ok {
				for _, r := range ra.Spec.GetJwtRules() {
					if !r.GetForwardOriginalToken() {
						t.Errorf("%s: RequestAuthentication %s removes the access token (issuer %s) before agentauthz sees it: set forwardOriginalToken, or leave token validation to agentauthz", f, ra.Name, r.GetIssuer())
					}
				}
			}
		}
	}

	objs = readObjects(t, "istio/agentauthz-access.yaml")
	pa = only[*istiosecurity.PeerAuthentication](t, objs, 1)[0]
	if pa.Namespace != releaseNamespace || pa.Spec.GetMtls().GetMode() != istioapi.PeerAuthentication_MutualTLS_STRICT || pa.Spec.GetSelector() != nil {
		t.Errorf("agentauthz's PeerAuthentication %s/%s %v, want STRICT for the whole namespace", pa.Namespace, pa.Name, &pa.Spec)
	}
	allow := only[*istiosecurity.AuthorizationPolicy](t, objs, 1)[0]
	if allow.Namespace != releaseNamespace || allow.Spec.GetAction() != istioapi.AuthorizationPolicy_ALLOW ||
		!labels.SelectorFromSet(allow.Spec.GetSelector().GetMatchLabels()).Matches(podLabels) {
		t.Errorf("agentauthz's AuthorizationPolicy %s/%s %v, want ALLOW selecting the chart's pods %v", allow.Namespace, allow.Name, &allow.Spec, podLabels)
	}
	// Check (the gRPC port) only from named principals.
	for _, r := range allow.Spec.GetRules() {
		for _, to := range r.GetTo() {
			if slices.Contains(to.GetOperation().GetPorts(), strconv.Itoa(int(grpcPort))) {
				if len(r.GetFrom()) == 0 || len(r.GetFrom()[0].GetSource().GetPrincipals()) == 0 {
					t.Errorf("the gRPC port is open to every caller: %v", r)
				}
			}
		}
	}
}

func servicePort(t *testing.T, svc *corev1.Service, name string) int32 {
	t.Helper()
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return p.Port
		}
	}
	t.Fatalf("Service %s has no port %q", svc.Name, name)
	return 0
}

func mapKeys(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// TestEnvoyGateway: the SecurityPolicy sends every request through the Gateway to agentauthz
// over gRPC, body included, failing closed; the ReferenceGrant lets it name the chart's Service;
// the ClientTrafficPolicy asks agents for certificates and reads requests as agentauthz
// requires; the chart admits only the Gateway's proxies to Check.
func TestEnvoyGateway(t *testing.T) {
	gw := readObjects(t, "envoy-gateway/gateway.yaml")
	gateway := only[*gwapiv1.Gateway](t, gw, 1)[0]
	only[*gwapiv1.HTTPRoute](t, gw, 1)
	targetsGateway := func(refs []gwapiv1.LocalPolicyTargetReferenceWithSectionName) bool {
		return len(refs) == 1 && refs[0].Kind == "Gateway" && string(refs[0].Name) == gateway.Name
	}

	objs := readObjects(t, "envoy-gateway/security-policy.yaml")
	sp := only[*egv1a1.SecurityPolicy](t, objs, 1)[0]
	if sp.Namespace != gateway.Namespace || !targetsGateway(sp.Spec.TargetRefs) {
		t.Errorf("SecurityPolicy %s/%s targets %v, want the Gateway %s/%s", sp.Namespace, sp.Name, sp.Spec.TargetRefs, gateway.Namespace, gateway.Name)
	}
	ea := sp.Spec.ExtAuth
	if ea == nil || ea.GRPC == nil || ea.HTTP != nil {
		t.Fatalf("extAuth %+v, want gRPC", ea)
	}
	if ea.FailOpen == nil || *ea.FailOpen || ea.StatusOnError == nil || *ea.StatusOnError != 503 {
		t.Errorf("failOpen %v, statusOnError %v: want fail closed with 503", ea.FailOpen, ea.StatusOnError)
	}
	if ea.BodyToExtAuth == nil || ea.BodyToExtAuth.MaxRequestBytes < minRequestBytes {
		t.Errorf("bodyToExtAuth %+v, want at least %d bytes", ea.BodyToExtAuth, minRequestBytes)
	}
	if ea.Timeout == nil {
		t.Error("no timeout")
	} else if d, err := time.ParseDuration(string(*ea.Timeout)); err != nil || d <= engine.DefaultTimeout {
		t.Errorf("timeout %v (%v) is not above agentauthz's check timeout %v", *ea.Timeout, err, engine.DefaultTimeout)
	}
	if len(ea.HeadersToExtAuth) != 0 {
		t.Errorf("headersToExtAuth %v: agentauthz needs every header (it refuses the ones that would make a request read two ways, and reads an agent's access token from authorization)", ea.HeadersToExtAuth)
	}
	svc, podLabels := chartService(t, "envoy-gateway/values-envoy-gateway.yaml")
	refs := ea.GRPC.BackendRefs
	if len(refs) != 1 || string(refs[0].Name) != svc.Name || refs[0].Namespace == nil || string(*refs[0].Namespace) != releaseNamespace ||
		refs[0].Port == nil || int32(*refs[0].Port) != servicePort(t, svc, "grpc") {
		t.Errorf("backendRefs %+v, want the chart's Service %s/%s, port grpc", refs, releaseNamespace, svc.Name)
	}
	grant := only[*gwapiv1beta1.ReferenceGrant](t, objs, 1)[0]
	if grant.Namespace != releaseNamespace || len(grant.Spec.From) != 1 || string(grant.Spec.From[0].Kind) != "SecurityPolicy" ||
		string(grant.Spec.From[0].Namespace) != sp.Namespace || len(grant.Spec.To) != 1 || string(grant.Spec.To[0].Kind) != "Service" ||
		grant.Spec.To[0].Name == nil || string(*grant.Spec.To[0].Name) != svc.Name {
		t.Errorf("ReferenceGrant %+v does not let the SecurityPolicy name the Service %s", grant.Spec, svc.Name)
	}

	ctp := only[*egv1a1.ClientTrafficPolicy](t, readObjects(t, "envoy-gateway/client-traffic-policy.yaml"), 1)[0]
	if ctp.Namespace != gateway.Namespace || !targetsGateway(ctp.Spec.TargetRefs) {
		t.Errorf("ClientTrafficPolicy targets %v, want the Gateway", ctp.Spec.TargetRefs)
	}
	cv := ctp.Spec.TLS.ClientValidation
	if cv == nil || cv.Mode == nil || *cv.Mode != egv1a1.ClientValidationRequireAndVerify || len(cv.CACertificateRefs) == 0 || cv.SubjectAltNames == nil || len(cv.SubjectAltNames.URIs) == 0 {
		t.Errorf("clientValidation %+v: want a required client certificate from the trust bundle, with a URI SAN", cv)
	} else {
		for _, u := range cv.SubjectAltNames.URIs {
			if u.Type == nil || *u.Type != egv1a1.StringMatchPrefix || !strings.HasPrefix(u.Value, "spiffe://") || !strings.HasSuffix(u.Value, "/") {
				t.Errorf("client URI SAN match %+v, want the agents' SPIFFE ID prefix", u)
			}
		}
	}
	h, p := ctp.Spec.Headers, ctp.Spec.Path
	if h == nil || h.WithUnderscoresAction == nil || *h.WithUnderscoresAction != egv1a1.WithUnderscoresActionRejectRequest ||
		h.XForwardedClientCert == nil || h.XForwardedClientCert.Mode == nil || *h.XForwardedClientCert.Mode != egv1a1.XFCCForwardModeSanitize {
		t.Errorf("headers %+v: want underscores refused and X-Forwarded-Client-Cert sanitized", h)
	}
	if p == nil || p.EscapedSlashesAction == nil || *p.EscapedSlashesAction != egv1a1.KeepUnchangedAction || p.DisableMergeSlashes == nil || !*p.DisableMergeSlashes {
		t.Errorf("path %+v: want escaped slashes kept and slashes not merged", p)
	}

	// Only the Gateway's proxies may call Check.
	np := only[*networkingv1.NetworkPolicy](t, mustRender(t, values(t, "envoy-gateway/values-envoy-gateway.yaml", shared)), 1)[0]
	if !labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(podLabels) || len(np.Spec.Ingress) != 2 || len(np.Spec.Ingress[0].From) == 0 {
		t.Errorf("NetworkPolicy %+v, want gRPC from the Gateway's proxies only", np.Spec)
	}
}
