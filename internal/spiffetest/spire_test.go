//go:build linux

package spiffetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// The identities SPIRE issues in this test. agentauthz runs as its own binary; the test binary
// itself is entitled to the other three, and picks one per connection or token.
var (
	trustDomain  = spiffeid.RequireTrustDomainFromString("acme.internal")
	nodeID       = spiffeid.RequireFromPath(trustDomain, "/node")
	agentauthzID = spiffeid.RequireFromPath(trustDomain, "/agentauthz")
	envoyID      = spiffeid.RequireFromPath(trustDomain, "/envoy")
	intruderID   = spiffeid.RequireFromPath(trustDomain, "/intruder")
	helpdeskID   = spiffeid.RequireFromPath(trustDomain, "/agent/helpdesk")
	biID         = spiffeid.RequireFromPath(trustDomain, "/agent/bi")
)

const (
	// helpdeskHost accepts JWT-SVIDs for this audience (testdata/policy/acme.yaml).
	helpdeskHost = "helpdesk.acme.internal"
	reportsHost  = "reports.acme.internal"
	// upstreamKey is the helpdesk API credential agentauthz injects.
	upstreamKey = "SENTINEL-spiffetest-helpdesk-key"
	// agentauthzSVIDTTL is short so that agentauthz's X.509-SVID rotates during the test.
	agentauthzSVIDTTL = 20 * time.Second
	// setupDeadline bounds each wait for SPIRE or agentauthz to come up.
	setupDeadline = 60 * time.Second
)

// spireBinaries finds spire-server and spire-agent: in AGENTAUTHZ_SPIRE_BIN, else where .ci/run
// builds them, else on PATH. Without them the test skips, or fails when CI is set.
func spireBinaries(t *testing.T) (server, agent string) {
	t.Helper()
	if dir := os.Getenv("AGENTAUTHZ_SPIRE_BIN"); dir != "" {
		server, agent = filepath.Join(dir, "spire-server"), filepath.Join(dir, "spire-agent")
		for _, b := range []string{server, agent} {
			if _, err := os.Stat(b); err != nil {
				t.Fatalf("AGENTAUTHZ_SPIRE_BIN=%s: %v", dir, err)
			}
		}
		return server, agent
	}
	if cache, err := os.UserCacheDir(); err == nil {
		dir := filepath.Join(cache, "agentauthz", "spire-v1.13.3")
		s, a := filepath.Join(dir, "spire-server"), filepath.Join(dir, "spire-agent")
		if isFile(s) && isFile(a) {
			return s, a
		}
	}
	s, errS := exec.LookPath("spire-server")
	a, errA := exec.LookPath("spire-agent")
	if errS == nil && errA == nil {
		return s, a
	}
	msg := "SPIRE binaries not available: set AGENTAUTHZ_SPIRE_BIN (see .ci/run)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return "", ""
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// shortTempDir is a temporary directory with a path short enough for unix sockets in it
// (sun_path holds about 100 bytes; t.TempDir() under a long TMPDIR may not leave room).
func shortTempDir(t *testing.T) string {
	t.Helper()
	base := os.TempDir()
	if len(base) > 40 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The workload attestor sees resolved paths; so must the selectors.
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// process is a child process whose output goes to a log file, stopped when the test ends.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProcess(t *testing.T, dir, name string, env []string, bin string, args ...string) *process {
	t.Helper()
	p := &process{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.Env = append(os.Environ(), env...)
	// Not left behind if the test binary dies.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			p.dumpLog(t)
		}
	})
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) stop(t *testing.T) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not stop within 15s of SIGTERM; killing it", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// dumpLog logs the last lines the process wrote.
func (p *process) dumpLog(t *testing.T) {
	data, err := os.ReadFile(p.log)
	if err != nil {
		t.Logf("%s log: %v", p.name, err)
		return
	}
	if len(data) > 8000 {
		data = data[len(data)-8000:]
	}
	t.Logf("--- %s log (tail) ---\n%s", p.name, data)
}

// waitFor polls cond until it succeeds, the process it depends on exits, or the deadline passes.
func waitFor(t *testing.T, what string, p *process, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(setupDeadline)
	delay := 50 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if p != nil && p.exited() {
			t.Fatalf("waiting for %s: %s exited: %v (last error: %v)", what, p.name, p.err, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %s: %v", what, setupDeadline, err)
		}
		time.Sleep(delay)
		delay = min(delay*2, time.Second)
	}
}

// run runs a SPIRE CLI command and returns its standard output.
func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := runErr(bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", filepath.Base(bin), strings.Join(args, " "), err)
	}
	return out
}

func runErr(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%v: %s%s", err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String(), nil
}

func writeTemplate(t *testing.T, src, dst string, data any) {
	t.Helper()
	tmpl, err := template.ParseFiles(src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// spire is a running SPIRE server and agent.
type spire struct {
	serverBin, agentBin string
	dir                 string
	serverSocket        string
	// agentAddr is the Workload API address, unix:///path.
	agentAddr string
}

func (s *spire) server(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, s.serverBin, append(args, "-socketPath", s.serverSocket)...)
}

func (s *spire) wlOpt() workloadapi.ClientOption { return workloadapi.WithAddr(s.agentAddr) }

// startSPIRE starts a SPIRE server and an agent attested by a join token, both on loopback
// with their state and sockets in dir.
func startSPIRE(t *testing.T, dir string) *spire {
	t.Helper()
	s := &spire{dir: dir, serverSocket: filepath.Join(dir, "server.sock"), agentAddr: "unix://" + filepath.Join(dir, "agent.sock")}
	s.serverBin, s.agentBin = spireBinaries(t)
	conf := struct {
		Dir        string
		ServerPort int
	}{dir, freePort(t)}
	writeTemplate(t, "testdata/server.conf.tmpl", filepath.Join(dir, "server.conf"), conf)
	writeTemplate(t, "testdata/agent.conf.tmpl", filepath.Join(dir, "agent.conf"), conf)

	server := startProcess(t, dir, "spire-server", nil, s.serverBin, "run", "-config", filepath.Join(dir, "server.conf"))
	waitFor(t, "spire-server healthcheck", server, func() error {
		_, err := runErr(s.serverBin, "healthcheck", "-socketPath", s.serverSocket)
		return err
	})

	// The agent trusts the server through the bundle the server prints, not insecure_bootstrap.
	bundle := s.server(t, "bundle", "show")
	if err := os.WriteFile(filepath.Join(dir, "bundle.pem"), []byte(bundle), 0o600); err != nil {
		t.Fatal(err)
	}
	out := s.server(t, "token", "generate", "-spiffeID", nodeID.String(), "-ttl", "600")
	token, ok := strings.CutPrefix(strings.TrimSpace(out), "Token: ")
	if !ok || token == "" {
		t.Fatalf("spire-server token generate printed %q, want Token: <token>", out)
	}
	agent := startProcess(t, dir, "spire-agent", nil, s.agentBin, "run", "-config", filepath.Join(dir, "agent.conf"), "-joinToken", token)
	waitFor(t, "spire-agent healthcheck", agent, func() error {
		_, err := runErr(s.agentBin, "healthcheck", "-socketPath", filepath.Join(dir, "agent.sock"))
		return err
	})
	return s
}

// register creates a workload entry for the binary at path.
func (s *spire) register(t *testing.T, id spiffeid.ID, path string, extra ...string) {
	t.Helper()
	args := []string{"entry", "create", "-parentID", nodeID.String(), "-spiffeID", id.String(), "-selector", "unix:path:" + path}
	s.server(t, append(args, extra...)...)
}

// waitForSVIDs waits until the Workload API serves the test binary all of ids.
func (s *spire) waitForSVIDs(t *testing.T, ids ...spiffeid.ID) {
	t.Helper()
	waitFor(t, "the Workload API to serve "+fmt.Sprint(ids), nil, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		x509Ctx, err := workloadapi.FetchX509Context(ctx, s.wlOpt())
		if err != nil {
			return err
		}
		var have []spiffeid.ID
		for _, svid := range x509Ctx.SVIDs {
			have = append(have, svid.ID)
		}
		for _, id := range ids {
			if !slices.Contains(have, id) {
				return fmt.Errorf("the Workload API serves %v, not yet %s", have, id)
			}
		}
		return nil
	})
}

// buildAgentauthz builds the agentauthz binary into dir.
func buildAgentauthz(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "agentauthz")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/agentauthz/agentauthz/cmd/agentauthz")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build agentauthz: %v\n%s", err, out)
	}
	return bin
}

// testBinary is the path of the running test binary, as the workload attestor sees it.
func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		t.Fatal(err)
	}
	return exe
}

// agentauthz is a running `agentauthz serve`.
type agentauthz struct {
	proc     *process
	grpcAddr string
	httpAddr string
}

func startAgentauthz(t *testing.T, s *spire, bin string) *agentauthz {
	t.Helper()
	policyDir, err := filepath.Abs("testdata/policy")
	if err != nil {
		t.Fatal(err)
	}
	a := &agentauthz{
		grpcAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	a.proc = startProcess(t, s.dir, "agentauthz", []string{"AGENTAUTHZ_SPIFFETEST_HELPDESK_KEY=" + upstreamKey}, bin, "serve",
		"--policy", policyDir,
		"--spiffe-socket", s.agentAddr,
		"--grpc-allowed-clients", envoyID.String(),
		"--grpc-addr", a.grpcAddr,
		"--http-addr", a.httpAddr,
		"--decision-log", "off",
		"--data-dir", filepath.Join(s.dir, "agentauthz-data"),
	)
	waitFor(t, "agentauthz /readyz", a.proc, func() error {
		resp, err := http.Get("http://" + a.httpAddr + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	return a
}

// decisions is the number of decisions agentauthz has made, from /metrics.
func (a *agentauthz) decisions(t *testing.T) float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var n float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "agentauthz_decisions_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("/metrics: %q: %v", line, err)
		}
		n += v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// x509Source is the test binary's X.509 source presenting the SVID for id.
func x509Source(t *testing.T, s *spire, id spiffeid.ID) *workloadapi.X509Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupDeadline)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx,
		workloadapi.WithClientOptions(s.wlOpt()),
		workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, svid := range svids {
				if svid.ID == id {
					return svid
				}
			}
			return nil
		}))
	if err != nil {
		t.Fatalf("X.509 source for %s: %v", id, err)
	}
	t.Cleanup(func() { src.Close() })
	svid, err := src.GetX509SVID()
	if err != nil || svid.ID != id {
		t.Fatalf("X.509 source for %s holds %v (%v)", id, svid, err)
	}
	return src
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) authv3.AuthorizationClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

func rpcCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkRequest is what Envoy asks about GET host path, from principal ("" for a caller without
// mTLS), with headers.
func checkRequest(principal, host, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: principal},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: host, Path: path, Headers: headers,
		}},
	}}
}

// answer is what the tests read from a CheckResponse.
type answer struct {
	allow   bool
	status  int
	code    string
	agent   string
	removed []string
	set     map[string]string
}

func (a answer) String() string {
	return fmt.Sprintf("allow=%v status=%d code=%s agent=%q removed=%q", a.allow, a.status, a.code, a.agent, a.removed)
}

func check(t *testing.T, c authv3.AuthorizationClient, req *authv3.CheckRequest) answer {
	t.Helper()
	resp, err := c.Check(rpcCtx(t), req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	meta := resp.GetDynamicMetadata().AsMap()
	a := answer{set: map[string]string{}}
	a.code, _ = meta["code"].(string)
	a.agent, _ = meta["agent"].(string)
	switch r := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		a.allow, a.status = true, 200
		a.removed = r.OkResponse.GetHeadersToRemove()
		for _, h := range r.OkResponse.GetHeaders() {
			a.set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
	case *authv3.CheckResponse_DeniedResponse:
		a.status = int(r.DeniedResponse.GetStatus().GetCode())
	default:
		t.Fatalf("CheckResponse without http_response: %v", resp)
	}
	return a
}

func (a answer) wantAllow(t *testing.T, agent spiffeid.ID) {
	t.Helper()
	if !a.allow || a.agent != agent.String() {
		t.Errorf("got %v, want allowed as %s", a, agent)
	}
}

func (a answer) wantDeny(t *testing.T, status int, code string) {
	t.Helper()
	if a.allow || a.status != status || a.code != code {
		t.Errorf("got %v, want a %d %s deny", a, status, code)
	}
}

// wantRefused checks that a Check over creds fails at the transport, without a decision.
func wantRefused(t *testing.T, az *agentauthz, creds credentials.TransportCredentials) {
	t.Helper()
	before := az.decisions(t)
	c := dial(t, az.grpcAddr, creds)
	resp, err := c.Check(rpcCtx(t), checkRequest(helpdeskID.String(), helpdeskHost, "/v1/tickets", nil))
	if err == nil {
		t.Fatalf("Check answered %v, want the connection refused", resp)
	}
	if code := status.Code(err); code != codes.Unavailable {
		t.Errorf("Check failed with %s (%v), want Unavailable: a refused handshake", code, err)
	}
	t.Logf("refused as expected: %v", err)
	if after := az.decisions(t); after != before {
		t.Errorf("agentauthz made %v decisions for a refused client", after-before)
	}
}

func bearer(token string) map[string]string {
	return map[string]string{"authorization": "Bearer " + token}
}

// fetchJWT mints a JWT-SVID for the helpdesk agent through the Workload API.
func fetchJWT(t *testing.T, s *spire, audience string, extra ...string) string {
	t.Helper()
	svid, err := workloadapi.FetchJWTSVID(rpcCtx(t), jwtsvid.Params{
		Audience: audience, ExtraAudiences: extra, Subject: helpdeskID,
	}, s.wlOpt())
	if err != nil {
		t.Fatalf("FetchJWTSVID(%s): %v", audience, err)
	}
	if svid.ID != helpdeskID {
		t.Fatalf("FetchJWTSVID minted a token for %s, want %s", svid.ID, helpdeskID)
	}
	return svid.Marshal()
}

// tokenKeyID reads the kid of a compact JWS.
func tokenKeyID(t *testing.T, token string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var header struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(h, &header); err != nil {
		t.Fatal(err)
	}
	return header.Kid
}

// selfSigned is a JWT-SVID for the helpdesk agent signed with a key SPIRE never saw.
func selfSigned(t *testing.T, audience string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	in := enc(map[string]any{"alg": "ES256", "kid": "not-a-spire-key", "typ": "JWT"}) + "." +
		enc(map[string]any{"sub": helpdeskID.String(), "aud": []string{audience}, "exp": time.Now().Add(5 * time.Minute).Unix(), "iat": time.Now().Unix()})
	sum := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestSPIRE runs agentauthz with its identity from a real SPIRE agent, called over mTLS by an
// Envoy identity SPIRE issued, and deciding on JWT-SVIDs SPIRE minted.
func TestSPIRE(t *testing.T) {
	started := time.Now()
	dir := shortTempDir(t)
	s := startSPIRE(t, dir)
	t.Logf("SPIRE server and agent healthy after %s", time.Since(started).Round(time.Millisecond))

	azBin := buildAgentauthz(t, dir)
	self := testBinary(t)
	s.register(t, agentauthzID, azBin, "-x509SVIDTTL", strconv.Itoa(int(agentauthzSVIDTTL/time.Second)))
	for _, id := range []spiffeid.ID{envoyID, intruderID, helpdeskID} {
		s.register(t, id, self)
	}
	s.waitForSVIDs(t, envoyID, intruderID, helpdeskID)
	t.Logf("SVIDs served after %s", time.Since(started).Round(time.Millisecond))

	az := startAgentauthz(t, s, azBin)
	t.Logf("agentauthz ready after %s", time.Since(started).Round(time.Millisecond))

	envoySrc := x509Source(t, s, envoyID)
	envoyTLS := tlsconfig.MTLSClientConfig(envoySrc, envoySrc, tlsconfig.AuthorizeID(agentauthzID))
	envoy := dial(t, az.grpcAddr, credentials.NewTLS(envoyTLS))

	t.Run("envoy over mTLS gets decisions", func(t *testing.T) {
		before := az.decisions(t)
		a := check(t, envoy, checkRequest(helpdeskID.String(), helpdeskHost, "/v1/tickets?limit=5",
			map[string]string{"authorization": "Bearer agent-own-token", "cookie": "session=1"}))
		a.wantAllow(t, helpdeskID)
		if a.set["x-api-key"] != upstreamKey {
			t.Errorf("headers set %v, want the helpdesk API key injected", a.set)
		}
		for _, h := range []string{"authorization", "cookie"} {
			if !slices.Contains(a.removed, h) {
				t.Errorf("headers_to_remove = %q, want %s", a.removed, h)
			}
		}
		check(t, envoy, checkRequest(biID.String(), helpdeskHost, "/v1/tickets", nil)).wantDeny(t, 403, "scope_missing")
		check(t, envoy, checkRequest(helpdeskID.String(), helpdeskHost, "/v1/tickets?limit=5000", nil)).wantDeny(t, 400, "query_invalid")
		// The count the refused clients are checked against does count decisions.
		if n := az.decisions(t) - before; n != 3 {
			t.Errorf("agentauthz_decisions_total grew by %v over 3 decisions", n)
		}
	})

	t.Run("the server presents agentauthz's SVID", func(t *testing.T) {
		cert := serverCert(t, az, envoySrc)
		id, err := x509svid.IDFromCert(cert)
		if err != nil || id != agentauthzID {
			t.Errorf("server certificate identity %v (%v), want %s", id, err, agentauthzID)
		}
		// A client expecting another server identity refuses agentauthz.
		wantRefused(t, az, credentials.NewTLS(tlsconfig.MTLSClientConfig(envoySrc, envoySrc,
			tlsconfig.AuthorizeID(spiffeid.RequireFromPath(trustDomain, "/not-agentauthz")))))
	})

	t.Run("intruder SVID refused", func(t *testing.T) {
		intruderSrc := x509Source(t, s, intruderID)
		wantRefused(t, az, credentials.NewTLS(tlsconfig.MTLSClientConfig(intruderSrc, intruderSrc, tlsconfig.AuthorizeID(agentauthzID))))
	})

	t.Run("no client certificate refused", func(t *testing.T) {
		wantRefused(t, az, credentials.NewTLS(tlsconfig.TLSClientConfig(envoySrc, tlsconfig.AuthorizeID(agentauthzID))))
	})

	t.Run("plaintext refused", func(t *testing.T) {
		wantRefused(t, az, insecure.NewCredentials())
	})

	t.Run("JWT-SVID", func(t *testing.T) {
		token := fetchJWT(t, s, helpdeskHost)
		list := "/v1/tickets?limit=5"

		a := check(t, envoy, checkRequest("", helpdeskHost, list, bearer(token)))
		a.wantAllow(t, helpdeskID)
		if !slices.Contains(a.removed, "authorization") {
			t.Errorf("headers_to_remove = %q: the JWT-SVID must not reach the upstream", a.removed)
		}
		if a.set["x-api-key"] != upstreamKey {
			t.Errorf("headers set %v, want the helpdesk API key injected", a.set)
		}

		parts := strings.Split(token, ".")
		sig := []byte(parts[2])
		mid := len(sig) / 2 // not the last character, which may carry only padding bits
		sig[mid] = map[bool]byte{true: 'B', false: 'A'}[sig[mid] == 'A']
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		forgedPayload := bytes.Replace(payload, []byte(helpdeskID.String()), []byte(biID.String()), 1)
		if bytes.Equal(forgedPayload, payload) {
			t.Fatalf("the token's payload %s does not name %s", payload, helpdeskID)
		}
		forged := base64.RawURLEncoding.EncodeToString(forgedPayload)

		for _, tc := range []struct{ name, token string }{
			{"tampered signature", parts[0] + "." + parts[1] + "." + string(sig)},
			{"tampered payload", parts[0] + "." + forged + "." + parts[2]},
			{"wrong audience", fetchJWT(t, s, "bi.acme.internal")},
			{"unknown key", selfSigned(t, helpdeskHost)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := check(t, envoy, checkRequest("", helpdeskHost, list, bearer(tc.token)))
				a.wantDeny(t, 401, "jwt_svid_invalid")
				if a.agent != "" {
					t.Errorf("agent %q identified by an invalid token", a.agent)
				}
			})
		}

		t.Run("X.509 identity wins", func(t *testing.T) {
			// With a principal the token is not read: a bad one does not refuse the request...
			a := check(t, envoy, checkRequest(helpdeskID.String(), helpdeskHost, list, bearer("garbage")))
			a.wantAllow(t, helpdeskID)
			if !slices.Contains(a.removed, "authorization") {
				t.Errorf("headers_to_remove = %q, want authorization", a.removed)
			}
			// ...and a good one for another agent does not change who is calling.
			bi := check(t, envoy, checkRequest(biID.String(), helpdeskHost, list, bearer(token)))
			bi.wantDeny(t, 403, "scope_missing")
			if bi.agent != biID.String() {
				t.Errorf("agent %q, want the X.509 identity %s", bi.agent, biID)
			}
		})

		t.Run("host without jwt_svid", func(t *testing.T) {
			reportsToken := fetchJWT(t, s, reportsHost)
			check(t, envoy, checkRequest("", reportsHost, "/v1/revenue", bearer(reportsToken))).wantDeny(t, 401, "identity_missing")
		})
	})

	t.Run("rotation without restart", func(t *testing.T) {
		t.Run("agentauthz's X.509-SVID", func(t *testing.T) {
			first := serverCert(t, az, envoySrc)
			if ttl := first.NotAfter.Sub(first.NotBefore); ttl > agentauthzSVIDTTL+time.Minute {
				t.Fatalf("agentauthz's SVID lives %s, want about %s (-x509SVIDTTL)", ttl, agentauthzSVIDTTL)
			}
			waitFor(t, "agentauthz to present a rotated SVID", az.proc, func() error {
				if c := serverCert(t, az, envoySrc); c.SerialNumber.Cmp(first.SerialNumber) == 0 {
					return errors.New("still the first SVID")
				}
				return nil
			})
			check(t, envoy, checkRequest(helpdeskID.String(), helpdeskHost, "/v1/tickets", nil)).wantAllow(t, helpdeskID)
		})

		t.Run("JWT authority", func(t *testing.T) {
			before := tokenKeyID(t, fetchJWT(t, s, helpdeskHost))
			prepared := authorityID(t, s.server(t, "localauthority", "jwt", "prepare", "-output", "json"))
			// The agent (and agentauthz, on the same stream) learns the prepared key with the bundle.
			waitFor(t, "the prepared JWT authority in the Workload API's bundle", nil, func() error {
				set, err := workloadapi.FetchJWTBundles(rpcCtx(t), s.wlOpt())
				if err != nil {
					return err
				}
				b, err := set.GetJWTBundleForTrustDomain(trustDomain)
				if err != nil {
					return err
				}
				if !b.HasJWTAuthority(prepared) {
					return fmt.Errorf("bundle holds %d keys, not yet %s", len(b.JWTAuthorities()), prepared)
				}
				return nil
			})
			s.server(t, "localauthority", "jwt", "activate", "-authorityID", prepared)
			// A new audience set is not in the agent's JWT-SVID cache, so SPIRE signs it now.
			token := fetchJWT(t, s, helpdeskHost, "after-rotation")
			if kid := tokenKeyID(t, token); kid != prepared || kid == before {
				t.Fatalf("after activation the token's kid is %q, want the new authority %q (was %q)", kid, prepared, before)
			}
			waitFor(t, "agentauthz to accept a token signed by the new authority", az.proc, func() error {
				if a := check(t, envoy, checkRequest("", helpdeskHost, "/v1/tickets", bearer(token))); !a.allow {
					return fmt.Errorf("got %v", a)
				}
				return nil
			})
		})
	})

	t.Logf("done after %s", time.Since(started).Round(time.Millisecond))
}

// serverCert is the certificate agentauthz presents on a new connection from the envoy identity.
func serverCert(t *testing.T, az *agentauthz, envoySrc *workloadapi.X509Source) *x509.Certificate {
	t.Helper()
	cfg := tlsconfig.MTLSClientConfig(envoySrc, envoySrc, tlsconfig.AuthorizeID(agentauthzID))
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", az.grpcAddr, cfg)
	if err != nil {
		t.Fatalf("TLS handshake as %s: %v", envoyID, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// authorityID reads the authority_id from `spire-server localauthority jwt prepare -output json`.
func authorityID(t *testing.T, out string) string {
	t.Helper()
	var resp struct {
		PreparedAuthority struct {
			AuthorityID string `json:"authority_id"`
		} `json:"prepared_authority"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.PreparedAuthority.AuthorityID == "" {
		t.Fatalf("localauthority jwt prepare printed %q (%v), want prepared_authority.authority_id", out, err)
	}
	return resp.PreparedAuthority.AuthorityID
}
