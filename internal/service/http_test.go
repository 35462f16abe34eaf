package service_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/internal/service"
)

const approverToken = "service-test-approver-token"

// clientFrom is an HTTP client whose connections come from the loopback address ip
// (127.0.0.0/8 is all loopback), as a client on another host would from its own address.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

type answer struct {
	status     int
	code       string
	retryAfter string
	cookies    []*http.Cookie
}

// call sends a request with the headers given as name, value pairs.
func call(t *testing.T, c *http.Client, method, url, body string, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(raw, &p) // not every answer is a problem
	return answer{resp.StatusCode, p.Code, resp.Header.Get("Retry-After"), resp.Cookies()}
}

// apiCall lists approvals with a bearer token.
func apiCall(t *testing.T, c *http.Client, base, token string, hdr ...string) answer {
	t.Helper()
	return call(t, c, "GET", base+"/v1/approvals", "", append([]string{"Authorization", "Bearer " + token}, hdr...)...)
}

// consoleSignIn signs in to the console as its page does.
func consoleSignIn(t *testing.T, c *http.Client, base, token string) answer {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"token": token})
	return call(t, c, "POST", base+"/approvals/api/session", string(body),
		"Content-Type", "application/json", "Sec-Fetch-Site", "same-origin", "Origin", base)
}

func throttled(a answer) bool {
	n, err := strconv.Atoi(a.retryAfter)
	return a.status == http.StatusTooManyRequests && a.code == "throttled" && err == nil && n >= 1 && n <= 30
}

// TestSignInThrottled: failed approver sign-ins (API bearer tokens, the console) are logged,
// counted by surface and throttled per client address: once an address has failed 10 times,
// its sign-ins get 429 with Retry-After, the right token included, whatever its headers claim;
// meanwhile the real approver, from another address, signs in to the API and the console.
func TestSignInThrottled(t *testing.T) {
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "service-test-credential")
	t.Setenv(service.DemoApproverTokenEnv, approverToken)
	var logs syncBuffer
	svc, err := service.Start(service.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DecisionLog: "off",
		Approvals: service.ApprovalConfig{DataDir: filepath.Join(t.TempDir(), "data")},
		Log:       slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, svc)
	base := "http://" + svc.Server().HTTPAddr().String()
	apiAttacker, consoleAttacker, approver := clientFrom("127.0.0.2"), clientFrom("127.0.0.3"), clientFrom("127.0.0.1")

	for i := range 10 {
		if a := apiCall(t, apiAttacker, base, "guess-"+strconv.Itoa(i)); a.status != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %+v, want 401", i, a)
		}
		if a := consoleSignIn(t, consoleAttacker, base, "guess-"+strconv.Itoa(i)); a.status != http.StatusUnauthorized {
			t.Fatalf("wrong console token %d: %+v, want 401", i, a)
		}
	}
	// Throttled now, on every surface, even with the right token and a forwarding header.
	for _, a := range []answer{
		apiCall(t, apiAttacker, base, "guess-10"),
		apiCall(t, apiAttacker, base, approverToken),
		apiCall(t, apiAttacker, base, "guess-11", "X-Forwarded-For", "203.0.113.9", "X-Real-IP", "203.0.113.9"),
		consoleSignIn(t, apiAttacker, base, approverToken),
		consoleSignIn(t, consoleAttacker, base, "guess-10"),
		consoleSignIn(t, consoleAttacker, base, approverToken),
	} {
		if !throttled(a) {
			t.Errorf("during the attack: %+v, want 429 throttled with Retry-After", a)
		}
	}
	// The real approver, from another address, is not affected.
	if a := apiCall(t, approver, base, approverToken); a.status != http.StatusOK {
		t.Errorf("the approver's API call during the attack: %+v, want 200", a)
	}
	a := consoleSignIn(t, approver, base, approverToken)
	if a.status != http.StatusOK || len(a.cookies) != 1 {
		t.Fatalf("the approver's console sign-in during the attack: %+v, want 200 with a session cookie", a)
	}
	if a.cookies[0].Secure {
		t.Error("the session cookie is Secure on plaintext loopback: the console could not be used there")
	}

	_, page := get(t, base+"/metrics", "")
	for series, want := range map[string]float64{
		`agentauthz_signin_failures_total{surface="api"}`:      10,
		`agentauthz_signin_failures_total{surface="console"}`:  10,
		`agentauthz_signin_failures_total{surface="slack"}`:    0,
		`agentauthz_signin_throttled_total{surface="api"}`:     3,
		`agentauthz_signin_throttled_total{surface="console"}`: 3,
	} {
		if got, ok := metric(page, series); !ok || got != want {
			t.Errorf("%s = %v (%v), want %v", series, got, ok, want)
		}
	}
	out := logs.String()
	failed := logLines(t, out, "approver sign-in failed")
	if len(failed) != 20 {
		t.Errorf("%d failed sign-ins logged, want 20", len(failed))
	}
	for _, rec := range failed {
		if c := rec["client"]; c != "127.0.0.2" && c != "127.0.0.3" {
			t.Errorf("failed sign-in logged for client %v: %v", c, rec)
		}
	}
	if n := len(logLines(t, out, "approver sign-ins from this address are throttled after repeated failures")); n != 2 {
		t.Errorf("%d throttling lines, want 2 (one per attacking address)", n)
	}
	if strings.Contains(out, "guess-") || strings.Contains(out, approverToken) {
		t.Errorf("the server log shows a token:\n%s", out)
	}
}

// TestServeHTTPTLS: with certificate files the HTTP listener serves TLS on any address without
// --insecure, the console's session cookie is Secure, and SIGHUP reloads the files.
func TestServeHTTPTLS(t *testing.T) {
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "service-test-credential")
	t.Setenv(service.DemoApproverTokenEnv, approverToken)
	dir := t.TempDir()
	certPath, keyPath, first := servertest.KeyPair(t, dir)
	svc, err := service.Start(service.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "0.0.0.0:0", DecisionLog: "off",
		HTTP:      service.HTTPConfig{TLSCert: certPath, TLSKey: keyPath},
		Approvals: service.ApprovalConfig{DataDir: filepath.Join(dir, "data")},
	})
	if err != nil {
		t.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	runWith(t, svc, hup)
	_, port, _ := net.SplitHostPort(svc.Server().HTTPAddr().String())
	base := "https://127.0.0.1:" + port
	if a := call(t, servertest.HTTPSClient(first), "GET", base+"/healthz", ""); a.status != http.StatusOK {
		t.Errorf("GET /healthz over TLS: %+v", a)
	}
	a := consoleSignIn(t, servertest.HTTPSClient(first), base, approverToken)
	if a.status != http.StatusOK || len(a.cookies) != 1 || !a.cookies[0].Secure {
		t.Errorf("console sign-in over TLS: %+v, want a Secure session cookie", a)
	}

	_, _, second := servertest.KeyPair(t, dir)
	hup <- syscall.SIGHUP
	deadline := time.Now().Add(10 * time.Second)
	for !servedBy(t, "127.0.0.1:"+port).Equal(second) {
		if time.Now().After(deadline) {
			t.Fatal("the new certificate is not served after SIGHUP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a := call(t, servertest.HTTPSClient(second), "GET", base+"/readyz", ""); a.status != http.StatusOK {
		t.Errorf("GET /readyz trusting the reloaded certificate: %+v", a)
	}
}

// runWith runs svc with reloads (SIGHUP) until the test ends.
func runWith(t *testing.T, svc *service.Service, reloads chan os.Signal) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, reloads) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

func servedBy(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) // #nosec: only looking
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestBehindTLSProxy: behind a TLS-terminating proxy on the same host (plaintext to loopback),
// the console's session cookie is Secure all the same.
func TestBehindTLSProxy(t *testing.T) {
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "service-test-credential")
	t.Setenv(service.DemoApproverTokenEnv, approverToken)
	svc, err := service.Start(service.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DecisionLog: "off",
		HTTP:      service.HTTPConfig{BehindTLSProxy: true},
		Approvals: service.ApprovalConfig{DataDir: filepath.Join(t.TempDir(), "data")},
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, svc)
	base := "http://" + svc.Server().HTTPAddr().String()
	a := consoleSignIn(t, http.DefaultClient, base, approverToken)
	if a.status != http.StatusOK || len(a.cookies) != 1 || !a.cookies[0].Secure {
		t.Errorf("console sign-in behind a TLS proxy: %+v, want a Secure session cookie", a)
	}
}

// TestHTTPListenerConfigRefused: HTTP listener settings that cannot be served are refused
// before anything is opened or logged, in one line naming the flag.
func TestHTTPListenerConfigRefused(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, _ := servertest.KeyPair(t, dir)
	for _, tc := range []struct {
		cfg  service.Config
		want string
	}{
		{service.Config{HTTPAddr: "0.0.0.0:9002"}, "server: refusing plaintext HTTP on non-loopback address 0.0.0.0:9002; "},
		{service.Config{HTTPAddr: "10.1.2.3:9002", HTTP: service.HTTPConfig{BehindTLSProxy: true}}, "refusing plaintext HTTP on non-loopback address 10.1.2.3:9002"},
		{service.Config{HTTPAddr: "127.0.0.1:0", HTTP: service.HTTPConfig{TLSCert: certPath}}, "--http-tls-cert and --http-tls-key go together"},
		{service.Config{HTTPAddr: "127.0.0.1:0", HTTP: service.HTTPConfig{TLSKey: keyPath}}, "--http-tls-cert and --http-tls-key go together"},
		{service.Config{HTTPAddr: "127.0.0.1:0", HTTP: service.HTTPConfig{TLSSPIFFE: true}}, "--http-tls-spiffe needs --spiffe-socket"},
		{service.Config{HTTPAddr: "127.0.0.1:0", HTTP: service.HTTPConfig{TLSCert: certPath, TLSKey: keyPath, TLSSPIFFE: true},
			SPIFFE: service.SPIFFEConfig{Socket: "unix:///nonexistent"}}, "choose one"},
		{service.Config{HTTP: service.HTTPConfig{TLSCert: certPath, TLSKey: keyPath}}, "need an HTTP listener (--http-addr)"},
		{service.Config{HTTP: service.HTTPConfig{BehindTLSProxy: true}}, "--http-behind-tls-proxy needs an HTTP listener"},
		{service.Config{HTTPAddr: "127.0.0.1:0", HTTP: service.HTTPConfig{TLSCert: filepath.Join(dir, "missing.pem"), TLSKey: keyPath}},
			"--http-tls-cert, --http-tls-key: open "},
	} {
		var logs syncBuffer
		data := filepath.Join(t.TempDir(), "data")
		tc.cfg.GRPCAddr, tc.cfg.DecisionLog = "127.0.0.1:0", "off"
		tc.cfg.Approvals = service.ApprovalConfig{DataDir: data}
		tc.cfg.Log = slog.New(slog.NewJSONHandler(&logs, nil))
		svc, err := service.Start(tc.cfg)
		if err == nil {
			run(t, svc)()
			t.Errorf("%+v started", tc.cfg.HTTP)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s %+v: %v, want one line with %q", tc.cfg.HTTPAddr, tc.cfg.HTTP, err, tc.want)
		}
		if logs.String() != "" {
			t.Errorf("%s %+v: logged before refusing:\n%s", tc.cfg.HTTPAddr, tc.cfg.HTTP, logs.String())
		}
		if _, err := os.Stat(data); err == nil {
			t.Errorf("%s %+v: the approval store was opened", tc.cfg.HTTPAddr, tc.cfg.HTTP)
		}
	}
}
