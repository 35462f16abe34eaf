package servertest_test

import (
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

const credential = "SENTINEL-servertest-credential-41c2"

// TestDemoStore: DemoStore compiles the policy demo.Load compiles (what serve runs), with the
// given credential injected.
func TestDemoStore(t *testing.T) {
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "from-the-environment")
	want, err := demo.Load(nil)
	if err != nil {
		t.Fatalf("demo.Load: %v", err)
	}
	store, snap := servertest.DemoStore(t, credential)
	if store.Load() != snap || snap.Revision() != want.Revision() {
		t.Errorf("DemoStore: revision %s, want demo.Load's %s, in force", snap.Revision(), want.Revision())
	}
}

// TestStartCheck: a started server answers over a dialled connection, allow and deny read as
// Envoy enforces them.
func TestStartCheck(t *testing.T) {
	store, _ := servertest.DemoStore(t, credential)
	srv := servertest.Start(t, server.Config{Store: store})
	client := servertest.Client(t, srv)
	req := func(agent string) *authv3.CheckRequest {
		return extauthz.HTTPRequest{Principal: agent, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711"}.CheckRequest()
	}
	a := servertest.Check(t, client, req("spiffe://acme.internal/agent/helpdesk"))
	if !a.Allow || a.Status != 200 || a.GRPCCode != codes.OK || a.Code != "allowed" || a.Rule != "get-ticket" || a.DecisionID == "" || a.Problem != nil {
		t.Errorf("helpdesk reading a ticket: %+v, want allow by get-ticket", a)
	}
	d := servertest.Check(t, client, req("spiffe://acme.internal/agent/bi"))
	if d.Allow || d.Status != 403 || d.GRPCCode != codes.PermissionDenied || d.Code != "scope_missing" || d.ProblemString("code") != "scope_missing" {
		t.Errorf("bi reading a ticket: %+v, want 403 scope_missing", d)
	}
}

func TestReadRefusesMalformedAnswers(t *testing.T) {
	for name, resp := range map[string]*authv3.CheckResponse{
		"no http_response": {},
		"denial without a problem": {HttpResponse: &authv3.CheckResponse_DeniedResponse{
			DeniedResponse: &authv3.DeniedHttpResponse{Body: "forbidden"}}},
	} {
		if a, err := servertest.Read(resp); err == nil {
			t.Errorf("%s: Read = %+v, want an error", name, a)
		}
	}
}
