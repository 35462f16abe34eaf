package envoy_test

import (
	"crypto/tls"
	"path/filepath"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/agentauthz/agentauthz/internal/envoyproc"
	"github.com/agentauthz/agentauthz/internal/stack"
)

// sidecar is sidecar.yaml running in real Envoy: agentauthz (the stand-in) on a unix socket
// without TLS, the app in plain HTTP on loopback, Envoy presenting the API's own SVID to agents.
type sidecar struct {
	envoy    *envoyproc.Envoy
	authz    *authzServer
	app      *backend
	addr     string      // the agents' listener
	agentTLS *tls.Config // the helpdesk agent's HTTP/1.1 client configuration
}

func startSidecar(t *testing.T) *sidecar { return startSidecarOn(t, "127.0.0.1") }

// startSidecarOn is startSidecar with the agents' listener on the address listen (port chosen
// by Envoy).
func startSidecarOn(t *testing.T, listen string) *sidecar {
	t.Helper()
	envoyproc.Binary(t)
	p := stack.NewPKI(t)
	dir := stack.ShortTempDir(t)
	sds, authzSock := filepath.Join(dir, "sds.sock"), filepath.Join(dir, "authz.sock")
	stack.StartSDS(t, sds, p, p.Issue(t, helpdeskAPIID))
	sc := &sidecar{authz: startAuthz(t, "unix", authzSock, nil), app: startBackend(t, nil)}
	cfg := envoyproc.RenderFile(t, "sidecar.yaml", map[string]string{
		endpointAddr(10, "0.0.0.0", "8443"):      endpointAddr(10, listen, "0"),
		endpointAddr(22, "127.0.0.1", "8080"):    endpointAddr(22, "127.0.0.1", sc.app.port()),
		"path: /run/agentauthz/agentauthz.sock":  "path: " + authzSock,
		"path: /run/spire/agent/public/api.sock": "path: " + sds,
	})
	sc.envoy = envoyproc.Start(t, envoyproc.Options{Config: cfg})
	sc.addr = sc.envoy.ListenerAddr("inbound")
	agent := p.Issue(t, helpdeskAgent)
	// To agents, the sidecar is the API: it presents the API's SPIFFE ID.
	sc.agentTLS = p.ClientTLS(&agent, helpdeskAPIID, "http/1.1")
	return sc
}

// TestRealEnvoySidecar runs sidecar.yaml in real Envoy.
func TestRealEnvoySidecar(t *testing.T) {
	sc := startSidecar(t)
	authz, app, e, addr, agentTLS := sc.authz, sc.app, sc.envoy, sc.addr, sc.agentTLS
	send := func(probe string, answer answerFunc, target string, headers ...string) (int, string) {
		authz.answer(probe, answer)
		resp, body := rawHTTP1(t, addr, agentTLS, httpRequest("GET", target, "helpdesk.acme.internal",
			append([]string{"x-probe: " + probe}, headers...), ""))
		return resp.StatusCode, body
	}

	status, _ := send("allow", func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return okResponse(&authv3.OkHttpResponse{
			Headers:         []*corev3.HeaderValueOption{setHeader("authorization", "Bearer app-token")},
			HeadersToRemove: []string{"cookie"},
		}), nil
	}, "/v1/tickets?limit=5", "Authorization: Bearer agent-own", "Cookie: c=1")
	if status != 200 {
		t.Fatalf("allowed request: status %d", status)
	}
	cr := authz.onlyCheck(t, "allow")
	if got := cr.GetAttributes().GetSource().GetPrincipal(); got != helpdeskAgent {
		t.Errorf("source.principal = %q, want %s", got, helpdeskAgent)
	}
	if got := cr.GetAttributes().GetDestination().GetPrincipal(); got != helpdeskAPIID {
		t.Errorf("destination.principal = %q, want the API's ID %s", got, helpdeskAPIID)
	}
	reqs := app.requestsOf("allow")
	if len(reqs) != 1 || reqs[0].uri != "/v1/tickets?limit=5" || !slices.Equal(reqs[0].header.Values("Authorization"), []string{"Bearer app-token"}) || reqs[0].header.Get("Cookie") != "" {
		t.Errorf("the app got %+v", reqs)
	}

	status, body := send("deny", agentauthzDeny(codes.PermissionDenied, 403, "dec-s"), "/v1/admin")
	if status != 403 || body != problemBody || len(app.requestsOf("deny")) != 0 {
		t.Errorf("denied request: %d %q, %d reached the app", status, body, len(app.requestsOf("deny")))
	}

	authz.g.Stop()
	status, body = send("down", allow, "/v1/tickets")
	if status != 503 || body != "" || len(app.requestsOf("down")) != 0 {
		t.Errorf("agentauthz down: %d %q, %d reached the app; want 503 without a body, none", status, body, len(app.requestsOf("down")))
	}
	if n := e.Stats()["http.inbound.ext_authz.failure_mode_allowed"]; n != 0 {
		t.Errorf("ext_authz.failure_mode_allowed = %d", n)
	}
}
