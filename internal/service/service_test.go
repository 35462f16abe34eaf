package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/internal/service"
)

const helpdesk = "spiffe://acme.internal/agent/helpdesk"

// syncBuffer is a bytes.Buffer safe for the log's concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The service serves what `agentauthz serve` serves: decisions over gRPC, health and the approval
// API over HTTP, every decision in the log with the revision that decided; it stops and closes
// everything when its context ends.
func TestServeDecideStop(t *testing.T) {
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "service-test-credential")
	t.Setenv(service.DemoApproverTokenEnv, "service-test-approver")
	dir := t.TempDir()
	var decisions syncBuffer
	svc, err := service.Start(service.Config{
		GRPCAddr:    "127.0.0.1:0",
		HTTPAddr:    "127.0.0.1:0",
		DecisionLog: "-",
		Stdout:      &decisions,
		Approvals:   service.ApprovalConfig{DataDir: filepath.Join(dir, "data")},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, nil) }()

	client := servertest.Client(t, svc.Server())
	a := servertest.Check(t, client, extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711"}.CheckRequest())
	if !a.Allow || a.Rule != "get-ticket" {
		t.Fatalf("get-ticket: %+v", a)
	}
	held := servertest.Check(t, client, extauthz.HTTPRequest{Principal: helpdesk, Method: "POST", Host: "helpdesk.acme.internal",
		Path: "/v1/users/jdoe/password-reset", Headers: map[string]string{"content-type": "application/json"},
		Body: `{"reason":"User locked out after travel"}`}.CheckRequest())
	if held.Status != 428 || held.ProblemString("approval_id") == "" {
		t.Fatalf("password reset: %+v", held)
	}
	base := "http://" + svc.Server().HTTPAddr().String()
	req, _ := http.NewRequest("GET", base+"/v1/approvals/"+held.ProblemString("approval_id"), nil)
	req.Header.Set("authorization", "Bearer service-test-approver")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("the demo approver reads the held approval: %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "approvals.db")); err != nil {
		t.Errorf("the embedded approval store is not in the data directory: %v", err)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("the HTTP listener still answers after Run returned")
	}
	// Closing flushed the decision log: both decisions are there, with the revision.
	var n int
	for _, line := range strings.Split(strings.TrimSpace(decisions.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("decision log line %q: %v", line, err)
		}
		if rec["kind"] == "decision" {
			n++
			if rev, _ := rec["policy_revision"].(string); rev == "" {
				t.Errorf("decision without policy_revision: %s", line)
			}
		}
	}
	if n != 2 {
		t.Errorf("decision log has %d decisions, want 2:\n%s", n, decisions.String())
	}
}

// A policy that does not load is reported with every problem, and nothing is left listening.
func TestStartRefusesABadPolicy(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("agents: [{id: nope}]\nunknown_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := service.Start(service.Config{PolicyPath: dir, GRPCAddr: "127.0.0.1:0", DecisionLog: "off",
		Approvals: service.ApprovalConfig{DataDir: filepath.Join(dir, "data")}})
	problems, ok := service.IsPolicyProblem(err)
	if !ok || len(problems) == 0 {
		t.Fatalf("Start = %v, want policy problems", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("the approval store was opened for a policy that did not load")
	}
}
