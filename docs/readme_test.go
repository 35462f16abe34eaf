package docs

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/policy"
)

// grpcurlData finds the request of each grpcurl command in a Markdown file: what follows -d, in
// single quotes.
var grpcurlData = regexp.MustCompile(`(?s)grpcurl -plaintext -d '(.*?)' \\`)

// TestReadmeGrpcurl: the README's grpcurl requests are CheckRequests the demo policy answers as
// the README says: the helpdesk agent's listing allowed, the BI agent's read refused, and the
// password reset with a body held (428) until an approver approves it, after which the
// identical request with the approval header is allowed, once.
func TestReadmeGrpcurl(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var reqs []*authv3.CheckRequest
	for _, m := range grpcurlData.FindAllStringSubmatch(string(data), -1) {
		cr := &authv3.CheckRequest{}
		if err := protojson.Unmarshal([]byte(m[1]), cr); err != nil {
			t.Fatalf("README grpcurl request is not a CheckRequest: %v\n%s", err, m[1])
		}
		reqs = append(reqs, cr)
	}
	if len(reqs) != 3 {
		t.Fatalf("the README has %d grpcurl requests, want 3 (allowed, denied, held)", len(reqs))
	}
	files, err := policy.ReadPath("../internal/demo/policy")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	srv := extauthz.New(engine.New(engine.Config{Store: policy.NewStore(snap),
		Approvals: &approval.Gate{Store: store}, Timeout: time.Minute}))
	ctx := context.Background()
	check := func(cr *authv3.CheckRequest) *authv3.CheckResponse {
		t.Helper()
		resp, err := srv.Check(ctx, cr)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := check(reqs[0]); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("the listing: %v, want allowed", resp.GetStatus())
	}
	if resp := check(reqs[1]); resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
		t.Errorf("the BI agent's read: %v, want 403", resp)
	}
	held := check(reqs[2])
	if held.GetDeniedResponse().GetStatus().GetCode() != 428 {
		t.Fatalf("the password reset: %v, want 428", held)
	}
	id := regexp.MustCompile(`apr_[a-z0-9]+`).FindString(held.GetDeniedResponse().GetBody())
	if id == "" || !strings.Contains(held.GetDeniedResponse().GetBody(), `"approval_id"`) {
		t.Fatalf("the 428's body names no approval_id: %s", held.GetDeniedResponse().GetBody())
	}
	if _, err := store.Decide(ctx, id, approval.Verdict{Approve: true, By: "alice"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// As the README says: the same request with the approval header added.
	retry := reqs[2].GetAttributes().GetRequest().GetHttp()
	retry.Headers["x-agentauthz-approval"] = id
	if resp := check(reqs[2]); codes.Code(resp.GetStatus().GetCode()) != codes.OK || resp.GetOkResponse() == nil {
		t.Errorf("the approved retry: %v, want an okResponse", resp)
	}
	if resp := check(reqs[2]); resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
		t.Errorf("a second retry: %v, want 403 (an approval passes once)", resp)
	}
}
