package envoy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
	"github.com/agentauthz/agentauthz/internal/stack"
)

// grpcAnswer is what a grpc-go client got for one call.
type grpcAnswer struct {
	code    codes.Code
	message string         // grpc-message, decoded
	problem map[string]any // grpc-message read as agentauthz's problem details, if it is one
	trailer metadata.MD
	resp    *dynamicpb.Message
}

// TestRealEnvoyGRPC calls the demo helpdesk gRPC service (helpdesk.proto, Helpdesk/ResetPassword)
// with grpc-go through real Envoy (front-proxy.yaml) and real agentauthz (the demo policy's
// grpc-reset-password route: grpc_message, held for approval), and pins what the gRPC client
// receives. Envoy answers a denied gRPC call itself, as a gRPC error in a trailers-only response
// (HTTP 200, content-type application/grpc): grpc-status is agentauthz's (extauthz.GRPCStatus;
// without it Envoy would derive one from the HTTP status: 400 INTERNAL, 428 UNKNOWN), grpc-message
// is agentauthz's problem details as JSON, and agentauthz's x-agentauthz-decision-id and
// cache-control arrive as trailers.
func TestRealEnvoyGRPC(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	fd, err := demo.HelpdeskProto()
	if err != nil {
		t.Fatal(err)
	}
	m := fd.Services().ByName("Helpdesk").Methods().ByName("ResetPassword")
	call := func(conn *grpc.ClientConn, req string, md ...string) grpcAnswer {
		t.Helper()
		in := dynamicpb.NewMessage(m.Input())
		if err := protojson.Unmarshal([]byte(req), in); err != nil {
			t.Fatal(err)
		}
		a := grpcAnswer{resp: dynamicpb.NewMessage(m.Output())}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, append([]string{"authorization", "Bearer agent-own-token"}, md...)...)
		err := conn.Invoke(ctx, helpdesk.ResetPasswordMethod, in, a.resp, grpc.Trailer(&a.trailer))
		st, _ := status.FromError(err)
		a.code, a.message = st.Code(), st.Message()
		_ = json.Unmarshal([]byte(a.message), &a.problem)
		t.Logf("%.100s %v -> %v %s; trailers %v", req, md, a.code, a.message, a.trailer)
		return a
	}
	wantDenied := func(what string, a grpcAnswer, c codes.Code, httpStatus int, code string) {
		t.Helper()
		if a.code != c || a.problem == nil || a.problem["code"] != code || a.problem["status"] != float64(httpStatus) {
			t.Errorf("%s: %v %q, want %v with problem details %s (status %d)", what, a.code, a.message, c, code, httpStatus)
		}
		if want, _ := extauthz.GRPCStatus(httpStatus); want != c {
			t.Errorf("%s: extauthz.GRPCStatus(%d) = %v, want %v", what, httpStatus, want, c)
		}
		id := a.trailer.Get(extauthz.DecisionIDHeader)
		if len(id) != 1 || id[0] != a.problem["decision_id"] || a.trailer.Get("cache-control")[0] != "no-store" {
			t.Errorf("%s: trailers %v, want x-agentauthz-decision-id %v and cache-control no-store", what, a.trailer, a.problem["decision_id"])
		}
		if d, ok := s.Authz.Decisions.Find(id[0]); !ok || d.Code != code || d.Rule != "grpc-reset-password" && code != "scope_missing" {
			t.Errorf("%s: agentauthz recorded %+v", what, d)
		}
	}
	helpdeskConn := s.GRPCConn(t, stack.HelpdeskAgent)
	const reset = `{"username":"jdoe","reset":{"reason":"User locked out after travel","notify_user":true}}`

	// Denied by the schema: protovalidate rules of helpdesk.proto, INVALID_ARGUMENT.
	a := call(helpdeskConn, `{"username":"jdoe","reset":{"reason":"asap"}}`)
	wantDenied("a too short reason", a, codes.InvalidArgument, 400, "body_schema")
	if v, _ := a.problem["violations"].([]any); len(v) != 1 || v[0].(map[string]any)["field"] != "reset.reason" {
		t.Errorf("violations %v, want reset.reason", a.problem["violations"])
	}
	wantDenied("an upper-case username", call(helpdeskConn, `{"username":"JDoe","reset":{"reason":"User locked out after travel"}}`),
		codes.InvalidArgument, 400, "body_schema")

	// Not this agent's: PERMISSION_DENIED.
	wantDenied("the bi agent", call(s.GRPCConn(t, stack.BIAgent), reset), codes.PermissionDenied, 403, "scope_missing")

	// Held for approval: FAILED_PRECONDITION, the approval id in the problem.
	a = call(helpdeskConn, reset)
	wantDenied("held", a, codes.FailedPrecondition, 428, "approval_required")
	id, _ := a.problem["approval_id"].(string)
	if !strings.HasPrefix(id, "apr_") || a.problem["approval_state"] != "pending" {
		t.Fatalf("held: problem %v, want a pending approval", a.problem)
	}
	if n := len(s.HelpdeskGRPC.Calls()); n != 0 {
		t.Fatalf("%d calls reached the service before approval", n)
	}

	// Approved by alice (group it-admins), the identical call with the approval id passes once.
	approve(t, s, id)
	a = call(helpdeskConn, reset, approval.Header, id)
	if a.code != codes.OK {
		t.Fatalf("the approved retry: %v %s", a.code, a.message)
	}
	if got := a.resp.Get(m.Output().Fields().ByName(protoreflect.Name("sessions_revoked"))).Bool(); !got {
		t.Errorf("response %v, want sessions_revoked", a.resp)
	}
	calls := s.HelpdeskGRPC.Calls()
	if len(calls) != 1 || calls[0].Method != helpdesk.ResetPasswordMethod || calls[0].Peer != stack.EnvoyID ||
		strings.Join(calls[0].Metadata.Get("authorization"), ",") != "Bearer "+stack.HelpdeskToken || len(calls[0].Metadata.Get(approval.Header)) != 0 {
		t.Errorf("the service received %+v; want one call from Envoy with the injected credential and no approval header", calls)
	}
	if r := s.HelpdeskAPI.Resets(); len(r) != 1 || r[0].Username != "jdoe" || !r[0].NotifyUser {
		t.Errorf("resets %+v", r)
	}
	wantDenied("the approval used twice", call(helpdeskConn, reset, approval.Header, id), codes.PermissionDenied, 403, "approval_used")

	// A message over max_request_bytes: over HTTP/2 Envoy checks the first max_request_bytes
	// marked partial (allow_partial_message: false notwithstanding; testdata/checkrequests/
	// grpc-over-limit.json), and agentauthz refuses a partial body: RESOURCE_EXHAUSTED.
	calls = s.HelpdeskGRPC.Calls()
	wantDenied("a message over max_request_bytes", call(helpdeskConn, `{"username":"jdoe","reset":{"reason":"`+strings.Repeat("x", 70000)+`"}}`),
		codes.ResourceExhausted, 413, "body_truncated")
	if n := len(s.HelpdeskGRPC.Calls()); n != len(calls) {
		t.Errorf("a message over max_request_bytes reached the service")
	}
	// Envoy's own refusals carry Envoy's mapping of its HTTP status, and its own text: a host
	// without a virtual host is 404, UNIMPLEMENTED, before any check.
	before := len(s.Authz.Decisions.All())
	other, err := grpc.NewClient("passthrough:///"+s.Addr,
		grpc.WithTransportCredentials(credentials.NewTLS(s.PKI.ClientTLS(ptr(s.SVID(stack.HelpdeskAgent)), stack.EnvoyID, "h2"))),
		grpc.WithAuthority("payroll.acme.internal"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if a := call(other, reset); a.code != codes.Unimplemented || len(s.Authz.Decisions.All()) != before {
		t.Errorf("an unknown host: %v %q; want Envoy's UNIMPLEMENTED, no check", a.code, a.message)
	}
	// agentauthz unreachable: status_on_error 503, which Envoy answers as UNAVAILABLE.
	s.Authz.Stop()
	a = call(helpdeskConn, reset)
	s.Authz.Start()
	if a.code != codes.Unavailable {
		t.Errorf("agentauthz down: %v %q, want UNAVAILABLE", a.code, a.message)
	}

	// The wire form of a denial, as any gRPC client reads it: one HEADERS frame ending the stream.
	r := rawH2(t, s.Addr, s.PKI.ClientTLS(ptr(s.SVID(stack.HelpdeskAgent)), stack.EnvoyID, "h2"), [][2]string{
		{":method", "POST"}, {":scheme", "https"}, {":path", helpdesk.ResetPasswordMethod}, {":authority", stack.HelpdeskGRPCHost},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	}, []byte(grpcFrame))
	msg, _ := url.PathUnescape(r.get("grpc-message"))
	if r.status != http.StatusOK || r.get("content-type") != "application/grpc" || r.get("grpc-status") != "9" ||
		!strings.Contains(msg, `"code":"approval_required"`) || r.get(extauthz.DecisionIDHeader) == "" || len(r.body) != 0 || len(r.trailer) != 0 {
		t.Errorf("wire form: %d %q, body %q, trailer %q", r.status, r.header, r.body, r.trailer)
	}
}

// approve approves a held request as alice, the demo approver, through the approvals API.
func approve(t *testing.T, s *stack.Stack, id string) {
	t.Helper()
	req, err := http.NewRequest("POST", s.Authz.ApprovalsURL()+"/v1/approvals/"+id+"/approve", strings.NewReader(`{"comment":"checked with the user"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("authorization", "Bearer "+stack.AliceToken)
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("approving %s: %d", id, resp.StatusCode)
	}
}
