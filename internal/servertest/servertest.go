// Package servertest runs the real agentauthz server (internal/server) on loopback for tests and
// talks to it as Envoy does: Start serves a Config and stops it when the test ends, Dial connects
// a gRPC client, DemoStore puts the embedded demo policy in force, and Check reads an answer the
// way Envoy enforces it.
package servertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/policy"
)

// Defaults Start fills in where the Config leaves them zero.
const (
	// GRPCAddr is a free loopback port.
	GRPCAddr = "127.0.0.1:0"
	// DrainTimeout bounds how long Shutdown waits for checks in flight: tests drain in
	// milliseconds, and a stuck check should cost seconds, not the server's default.
	DrainTimeout = 5 * time.Second
)

// shutdownSlack is how long Shutdown may take beyond its DrainTimeout (stopping the HTTP
// listener takes up to 5 seconds) before the test fails instead of hanging.
const shutdownSlack = 15 * time.Second

// Start starts a server with cfg (GRPCAddr and DrainTimeout defaulted) and shuts it down when the
// test ends, failing the test if Shutdown does not return in time. Shutting it down earlier is
// allowed: the cleanup's Shutdown then returns at once.
func Start(tb testing.TB, cfg server.Config) *server.Server {
	tb.Helper()
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = GRPCAddr
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DrainTimeout
	}
	srv, err := server.Start(cfg)
	if err != nil {
		tb.Fatalf("server.Start: %v", err)
	}
	tb.Cleanup(func() {
		done := make(chan struct{})
		go func() {
			srv.Shutdown()
			close(done)
		}()
		bound := cfg.DrainTimeout + shutdownSlack
		select {
		case <-done:
		case <-time.After(bound):
			tb.Errorf("servertest: Shutdown did not return within %v", bound)
		}
	})
	return srv
}

// Dial connects to target (host:port, or unix:/path) without TLS, as Envoy's plaintext cluster
// does, and closes the connection when the test ends.
func Dial(tb testing.TB, target string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc.NewClient(%q): %v", target, err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// Client is an Authorization client of srv's gRPC listener, closed when the test ends.
func Client(tb testing.TB, srv *server.Server) authv3.AuthorizationClient {
	tb.Helper()
	target := srv.GRPCAddr().String()
	if srv.GRPCAddr().Network() == "unix" {
		target = "unix:" + target
	}
	return authv3.NewAuthorizationClient(Dial(tb, target))
}

// DemoStore compiles the embedded demo policy with credential standing in for every credential
// it injects (the helpdesk API's token), and puts it in force in a new Store. It reads nothing
// from the environment, so parallel tests may call it.
func DemoStore(tb testing.TB, credential string) (*policy.Store, *policy.Snapshot) {
	tb.Helper()
	files, err := policy.ReadFS(demo.Files, demo.Dir)
	if err != nil {
		tb.Fatalf("the demo policy: %v", err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: func(policy.SecretRef) (string, error) { return credential, nil }})
	if err != nil {
		tb.Fatalf("the demo policy: %v", err)
	}
	return policy.NewStore(snap), snap
}

// Answer is a CheckResponse as Envoy enforces it.
type Answer struct {
	// Allow is an ok_response with gRPC status OK.
	Allow bool
	// Status is the HTTP status: 200 on allow, the denial's status otherwise.
	Status int
	// GRPCCode is the CheckResponse's status code.
	GRPCCode codes.Code
	// Code, Rule and DecisionID are the decision's reason code, deciding route and id, from the
	// dynamic metadata.
	Code, Rule, DecisionID string
	// Problem is the denial's problem-details body; nil on allow.
	Problem map[string]any
	// Headers are the headers the answer sets: the denial's on the agent's answer, or the
	// allow's on the upstream request. Removed are the allow's headers_to_remove.
	Headers map[string]string
	Removed []string
}

// ProblemString is the problem's member key if it is a string, or "".
func (a Answer) ProblemString(key string) string {
	s, _ := a.Problem[key].(string)
	return s
}

// Read reads resp. It is an error for resp to carry no http_response, or a denial whose body is
// not a JSON object. It does not fail the test, so goroutines may call it.
func Read(resp *authv3.CheckResponse) (Answer, error) {
	meta := resp.GetDynamicMetadata().GetFields()
	a := Answer{
		GRPCCode:   codes.Code(resp.GetStatus().GetCode()),
		Code:       meta["code"].GetStringValue(),
		Rule:       meta["rule"].GetStringValue(),
		DecisionID: meta["decision_id"].GetStringValue(),
	}
	a.Headers = map[string]string{}
	switch {
	case resp.GetOkResponse() != nil:
		a.Allow, a.Status = a.GRPCCode == codes.OK, 200
		for _, h := range resp.GetOkResponse().GetHeaders() {
			a.Headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		a.Removed = resp.GetOkResponse().GetHeadersToRemove()
	case resp.GetDeniedResponse() != nil:
		d := resp.GetDeniedResponse()
		a.Status = int(d.GetStatus().GetCode())
		for _, h := range d.GetHeaders() {
			a.Headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if err := json.Unmarshal([]byte(d.GetBody()), &a.Problem); err != nil || a.Problem == nil {
			return a, fmt.Errorf("servertest: the denial's body is not a problem: %v: %q", err, d.GetBody())
		}
	default:
		return a, errors.New("servertest: CheckResponse without http_response: " + resp.String())
	}
	return a, nil
}

// Check asks client about req, with a 10-second deadline, and reads the answer; a failed call or
// an unreadable answer fails the test.
func Check(tb testing.TB, client authv3.AuthorizationClient, req *authv3.CheckRequest) Answer {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.Check(ctx, req)
	if err != nil {
		tb.Fatalf("Check: %v", err)
	}
	a, err := Read(resp)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}
