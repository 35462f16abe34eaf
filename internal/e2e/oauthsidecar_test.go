package e2e_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/extauthz"
	helpdeskapi "github.com/agentauthz/agentauthz/internal/demo/helpdesk"
	"github.com/agentauthz/agentauthz/internal/envoyproc"
	"github.com/agentauthz/agentauthz/internal/oauthkeys"
	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/internal/stack"
	"github.com/agentauthz/agentauthz/policy"
)

// TestOAuthAgentThroughSidecar runs envoy/sidecar.yaml as shipped (addresses and socket paths
// rewritten) in front of the demo helpdesk API on loopback, with agentauthz beside it on its
// unix socket deciding from the demo policy whose helpdesk host accepts the local issuer's
// access tokens. An agent without a certificate that asks for the API's host by name reaches
// it with a token alone, and the API gets the injected credential, never the token; without a
// token it is refused with 401 and the Bearer challenge; the metadata is served, readable from
// any origin. Without that name, or with a certificate of another trust domain, the handshake
// fails as before.
func TestOAuthAgentThroughSidecar(t *testing.T) {
	envoyproc.Binary(t) // skip, or fail under CI, before building anything
	iss := oauthtest.Start(t)
	p := stack.NewPKI(t)
	dir := stack.ShortTempDir(t)
	sds, sock := filepath.Join(dir, "sds.sock"), filepath.Join(dir, "authz.sock")
	stack.StartSDS(t, sds, p, p.Issue(t, stack.HelpdeskAPIID))

	snap, err := policy.Load(oauthDemo(t, iss), policy.Options{
		Secrets: func(policy.SecretRef) (string, error) { return stack.HelpdeskToken, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	decisions := &stack.DecisionRecord{}
	servertest.Start(t, server.Config{GRPCAddr: "unix:" + sock, Store: policy.NewStore(snap),
		OAuthKeys: oauthkeys.New(oauthkeys.Config{}), Decisions: decisions})

	api, err := helpdeskapi.New(helpdeskapi.Config{Token: stack.HelpdeskToken})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var received []http.Header
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received = append(received, r.Header.Clone())
		mu.Unlock()
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(app.Close)
	_, appPort, _ := net.SplitHostPort(app.Listener.Addr().String())

	cfg := envoyproc.RenderFile(t, filepath.Join(filepath.Dir(stack.FrontProxyConfig()), "sidecar.yaml"), map[string]string{
		"address: 0.0.0.0\n          port_value: 8443":               "address: 127.0.0.1\n          port_value: 0",
		"address: 127.0.0.1\n                      port_value: 8080": "address: 127.0.0.1\n                      port_value: " + appPort,
		"path: /run/agentauthz/agentauthz.sock":                      "path: " + sock,
		"path: /run/spire/agent/public/api.sock":                     "path: " + sds,
	})
	e := envoyproc.Start(t, envoyproc.Options{Config: cfg})
	addr := e.ListenerAddr("inbound")
	// client presents svid (none when nil) and asks for serverName by SNI ("": none).
	client := func(svid *stack.SVID, serverName string) *http.Client {
		tc := p.ClientTLS(svid, stack.HelpdeskAPIID, "http/1.1")
		tc.ServerName = serverName
		d := &net.Dialer{Timeout: 5 * time.Second}
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: tc, DisableKeepAlives: true,
			DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&tls.Dialer{NetDialer: d, Config: tc}).DialContext(ctx, "tcp", addr)
			},
		}}
	}
	const tickets = "https://helpdesk.acme.internal/v1/tickets"
	tokenOnly := client(nil, "helpdesk.acme.internal")
	tok := iss.Token(t, jose.ES256, iss.Claims(oauthtest.HelpdeskClient, "tickets.read"))

	a := sendToken(t, tokenOnly, "GET", tickets, "", tok)
	if a.status != 200 {
		t.Fatalf("a token and no certificate: %d %s", a.status, a.body)
	}
	mu.Lock()
	if len(received) != 1 || received[0].Get("Authorization") != "Bearer "+stack.HelpdeskToken {
		t.Fatalf("the API received %v, want one request with only the injected credential", received)
	}
	if d, ok := decisions.Find(received[0].Get(extauthz.DecisionIDHeader)); !ok || d.IdentitySource != "oauth" || d.Agent != stack.HelpdeskAgent || d.Rule != "list-tickets" {
		t.Errorf("recorded as %+v", d)
	}
	mu.Unlock()

	a = sendToken(t, tokenOnly, "GET", tickets, "", "")
	if a.status != 401 || a.problem["code"] != "identity_missing" ||
		a.header.Get("WWW-Authenticate") != `Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource"` {
		t.Errorf("neither a certificate nor a token: %d %v %s", a.status, a.header, a.body)
	}
	a = sendToken(t, tokenOnly, "GET", "https://helpdesk.acme.internal/.well-known/oauth-protected-resource", "", "", "Origin: https://chat.example")
	if a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("the metadata: %d %v %s", a.status, a.header, a.body)
	}
	mu.Lock()
	if len(received) != 1 {
		t.Errorf("the API received %d requests, want the one allowed", len(received))
	}
	mu.Unlock()

	// Not asking for the API's host by name: the chain that requires a certificate.
	if resp, err := client(nil, "").Get(tickets); err == nil {
		resp.Body.Close()
		t.Errorf("no certificate and no server name: answered %d, want a refused handshake", resp.StatusCode)
	}
	// A certificate is optional, not ignored: one of another trust domain is refused.
	other := stack.NewPKI(t).Issue(t, stack.HelpdeskAgent)
	if resp, err := client(&other, "helpdesk.acme.internal").Get(tickets); err == nil {
		resp.Body.Close()
		t.Errorf("a certificate of another CA: answered %d, want a refused handshake", resp.StatusCode)
	}
}
