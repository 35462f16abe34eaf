package extauthz_test

import (
	"context"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/policy"
)

// An allow whose route has a response rule names it, with the policy's revision, in the
// dynamic metadata the ext_proc filter reads; other answers carry no response_rule.
func TestResponseRuleMetadata(t *testing.T) {
	files, err := policy.ReadPath(filepath.Join("..", "policy", "testdata", "response", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	srv := extauthz.New(engine.New(engine.Config{Store: policy.NewStore(snap)}))
	const agent = "spiffe://example.org/agent/helpdesk"
	for _, c := range []struct {
		name, path, want string
	}{
		{"rule", "/tickets/T-1", "route:get-ticket@" + snap.Revision()},
		{"no rule", "/tickets", ""},
		{"denied", "/tickets/x", ""},
	} {
		resp, err := srv.Check(context.Background(), extauthz.HTTPRequest{Principal: agent, Host: "api.example.org", Path: c.path}.CheckRequest())
		if err != nil {
			t.Fatal(err)
		}
		// The metadata is written in its wire form: read it as Envoy does.
		wire, err := proto.Marshal(resp.GetDynamicMetadata())
		if err != nil {
			t.Fatal(err)
		}
		var meta structpb.Struct
		if err := proto.Unmarshal(wire, &meta); err != nil {
			t.Fatal(err)
		}
		got, ok := meta.GetFields()["response_rule"]
		if got.GetStringValue() != c.want || ok != (c.want != "") {
			t.Errorf("%s: response_rule %v, want %q", c.name, got, c.want)
		}
	}
}
