package service_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/service"
)

const ticketEvaluation = `{"subject":{"type":"agent","id":"spiffe://acme.internal/agent/helpdesk"},"action":{"name":"GET"},` +
	`"resource":{"type":"http","id":"https://helpdesk.acme.internal/v1/tickets/4711"}}`

func askAuthZEN(t *testing.T, base, token string) int {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/access/v1/evaluation", strings.NewReader(ticketEvaluation))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && !strings.HasPrefix(string(body), `{"decision":true`) {
		t.Errorf("the helpdesk agent's ticket read: %s", body)
	}
	return resp.StatusCode
}

// run runs svc until the returned stop is called, or the test ends.
func run(t *testing.T, svc *service.Service) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, nil) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// The service serves the AuthZEN API over the engine Envoy's door uses, on the HTTP listener
// and on --authzen-addr, to the demo PEP's token; the decisions are in the same decision log.
func TestServeAuthZEN(t *testing.T) {
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "service-test-credential")
	t.Setenv(service.DemoPEPTokenEnv, "service-test-pep")
	var decisions syncBuffer
	svc, err := service.Start(service.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DecisionLog: "-", Stdout: &decisions,
		Approvals: service.ApprovalConfig{DataDir: filepath.Join(t.TempDir(), "data")},
		AuthZEN:   service.AuthZENConfig{Addr: "127.0.0.1:0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, svc)
	for _, base := range []string{"http://" + svc.Server().HTTPAddr().String(), "http://" + svc.Server().AuthZENAddr().String()} {
		if got := askAuthZEN(t, base, "service-test-pep"); got != 200 {
			t.Errorf("%s with the demo PEP's token: %d", base, got)
		}
		if got := askAuthZEN(t, base, "not-the-token"); got != 401 {
			t.Errorf("%s with another token: %d", base, got)
		}
	}
	stop() // flushes the decision log
	if n := strings.Count(decisions.String(), `"rule":"get-ticket"`); n != 2 {
		t.Errorf("%d AuthZEN decisions in the decision log, want 2:\n%s", n, decisions.String())
	}
}

// Without AGENTAUTHZ_DEMO_PEP_TOKEN the demo PEP gets a generated token, logged once.
func TestDemoPEPTokenGenerated(t *testing.T) {
	t.Setenv(service.DemoPEPTokenEnv, "")
	var log syncBuffer
	svc, err := service.Start(service.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DecisionLog: "off",
		Approvals: service.ApprovalConfig{DataDir: filepath.Join(t.TempDir(), "data")},
		Log:       slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, svc)
	_, token, ok := strings.Cut(log.String(), "pep_token=")
	token, _, _ = strings.Cut(token, "\n")
	if !ok || len(token) < 20 {
		t.Fatalf("no generated PEP token in the log:\n%s", log.String())
	}
	if got := askAuthZEN(t, "http://"+svc.Server().HTTPAddr().String(), token); got != 200 {
		t.Errorf("the generated token: %d", got)
	}
}

// Misconfigurations are refused at start, naming the flag, and nothing is left listening.
func TestAuthZENConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		cfg  service.AuthZENConfig
		want string
	}{
		{service.AuthZENConfig{Addr: "127.0.0.1:0", AllowedPEPs: "spiffe://acme.internal/pep/orders"}, "--authzen-allowed-peps needs --authzen-addr and --spiffe-socket"},
		{service.AuthZENConfig{AllowedPEPs: "not-an-id"}, "--authzen-allowed-peps"},
		{service.AuthZENConfig{PDP: "http://pdp.example.com"}, "--authzen-pdp-url"},
		{service.AuthZENConfig{PEPTokens: filepath.Join(t.TempDir(), "missing.yaml")}, "--authzen-peps"},
		{service.AuthZENConfig{Addr: "0.0.0.0:0"}, "refusing plaintext AuthZEN on non-loopback address"},
	} {
		_, err := service.Start(service.Config{
			GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DecisionLog: "off",
			Approvals: service.ApprovalConfig{DataDir: filepath.Join(t.TempDir(), "data")},
			AuthZEN:   tc.cfg,
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
