package extauthz_test

import (
	"context"
	"strconv"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

// grpcFrame is acme.helpdesk.v1.ResetPasswordRequest{username, reset: {reason}} as one gRPC frame
// (short strings only: one-byte lengths).
func grpcFrame(username, reason string) string {
	reset := "\x0a" + string(rune(len(reason))) + reason
	msg := "\x0a" + string(rune(len(username))) + username + "\x12" + string(rune(len(reset))) + reset
	return "\x00\x00\x00\x00" + string(rune(len(msg))) + msg
}

// TestGRPCDenials: a denial of a gRPC call sets grpc-status, which Envoy keeps in the gRPC error
// it answers with (envoy/realenvoy_grpc_test.go shows what a gRPC client receives); a denial of
// anything else does not.
func TestGRPCDenials(t *testing.T) {
	store, _ := servertest.DemoStore(t, helpdeskToken)
	srv := extauthz.New(engine.New(engine.Config{Store: store, Approvals: &approval.Gate{Store: memstore.New()}}))
	grpcCall := func(principal, contentType, body string) *authv3.CheckRequest {
		return extauthz.HTTPRequest{Principal: principal, Method: "POST", Host: "helpdesk-grpc.acme.internal",
			Path: "/acme.helpdesk.v1.Helpdesk/ResetPassword", Protocol: "HTTP/2",
			Headers: map[string]string{"content-type": contentType, "te": "trailers"}, Body: body}.CheckRequest()
	}
	const helpdesk, bi = "spiffe://acme.internal/agent/helpdesk", "spiffe://acme.internal/agent/bi"
	for _, c := range []struct {
		name   string
		req    *authv3.CheckRequest
		status int
		grpc   string // the grpc-status header, "" for none
	}{
		{"held for approval", grpcCall(helpdesk, "application/grpc", grpcFrame("jdoe", "User locked out after travel")), 428, "9"},
		{"schema", grpcCall(helpdesk, "application/grpc", grpcFrame("jdoe", "asap")), 400, "3"},
		{"codec suffix", grpcCall(helpdesk, "application/grpc+proto", grpcFrame("jdoe", "asap")), 400, "3"},
		{"scope", grpcCall(bi, "application/grpc", grpcFrame("jdoe", "User locked out after travel")), 403, "7"},
		{"identity", grpcCall("", "application/grpc", grpcFrame("jdoe", "User locked out after travel")), 401, "16"},
		{"gRPC-Web is not gRPC to Envoy", grpcCall(helpdesk, "application/grpc-web", grpcFrame("jdoe", "asap")), 415, ""},
		{"not gRPC", extauthz.HTTPRequest{Principal: bi, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711"}.CheckRequest(), 403, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := srv.Check(context.Background(), c.req)
			if err != nil {
				t.Fatal(err)
			}
			d := resp.GetDeniedResponse()
			if d == nil || int(d.GetStatus().GetCode()) != c.status {
				t.Fatalf("answer %v, want a %d denial", resp, c.status)
			}
			got := ""
			for _, h := range d.GetHeaders() {
				if h.GetHeader().GetKey() == extauthz.GRPCStatusHeader {
					got = h.GetHeader().GetValue()
				}
			}
			if got != c.grpc {
				t.Errorf("grpc-status %q, want %q", got, c.grpc)
			}
			if want, ok := extauthz.GRPCStatus(c.status); c.grpc != "" && (!ok || strconv.Itoa(int(want)) != c.grpc) {
				t.Errorf("GRPCStatus(%d) = %v, %v", c.status, want, ok)
			}
		})
	}
	if _, ok := extauthz.GRPCStatus(418); ok {
		t.Error("GRPCStatus(418) is set")
	}
	if c, _ := extauthz.GRPCStatus(400); c != codes.InvalidArgument {
		t.Errorf("GRPCStatus(400) = %v", c)
	}
	if c, _ := extauthz.GRPCStatus(429); c != codes.ResourceExhausted { // approval_limit
		t.Errorf("GRPCStatus(429) = %v", c)
	}
}
