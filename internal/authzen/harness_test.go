package authzen_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/authzen"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

// The demo policy's agents and hosts, and the test PEP's token.
const (
	helpdesk   = "spiffe://acme.internal/agent/helpdesk"
	bi         = "spiffe://acme.internal/agent/bi"
	helpdeskAt = "https://helpdesk.acme.internal"
	biAt       = "https://bi.acme.internal"
	pepToken   = "test-pep-token-7c1d"
	credential = "SENTINEL-authzen-helpdesk-credential"
)

// decisionLog keeps every decision the engine records.
type decisionLog struct {
	mu  sync.Mutex
	all []audit.Decision
}

func (l *decisionLog) Decision(d audit.Decision) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, d)
	return nil
}

func (l *decisionLog) records() []audit.Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]audit.Decision(nil), l.all...)
}

// pdp is a real agentauthz server on loopback, deciding from the demo policy with approvals in
// memory, serving gRPC and the AuthZEN API on its HTTP listener (and on a TLS listener of its
// own when started with withTLS).
type pdp struct {
	srv       *server.Server
	base      string // the HTTP listener, http://127.0.0.1:PORT
	tlsBase   string // the AuthZEN TLS listener, https://127.0.0.1:PORT, or ""
	decisions *decisionLog
	approvals approval.Store
	pki       *pki
}

type option func(*serverConfig, *pdp)

// withTLS serves the AuthZEN API on a TLS listener of its own too, with the test PKI's server
// SVID, and admits the allowed SPIFFE IDs as PEPs.
func withTLS(t testing.TB, allowed ...string) option {
	return func(cfg *server.Config, p *pdp) {
		p.pki = newPKI(t)
		for _, id := range allowed {
			cfg.AuthZEN.AllowedPEPs = append(cfg.AuthZEN.AllowedPEPs, spiffeid.RequireFromString(id))
		}
		cfg.AuthZENAddr = "127.0.0.1:0"
		cfg.AuthZENTLS = authzen.TLSConfig(p.pki.svid(t, "spiffe://acme.internal/agentauthz"), p.pki.bundle)
	}
}

func startPDP(t testing.TB, opts ...option) *pdp {
	t.Helper()
	store, _ := servertest.DemoStore(t, credential)
	p := &pdp{decisions: &decisionLog{}, approvals: memstore.New()}
	cfg := server.Config{
		HTTPAddr:  "127.0.0.1:0",
		Store:     store,
		Decisions: p.decisions,
		Approvals: &approval.Gate{Store: p.approvals},
		AuthZEN:   &authzen.Config{Tokens: authzen.NewTokens(map[string]string{pepToken: "test-pep"})},
	}
	for _, o := range opts {
		o(&cfg, p)
	}
	p.srv = servertest.Start(t, cfg)
	p.base = "http://" + p.srv.HTTPAddr().String()
	if a := p.srv.AuthZENAddr(); a != nil {
		p.tlsBase = "https://" + a.String()
	}
	return p
}

// reply is an HTTP answer, its body read.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// object is the body as a JSON object; the test fails if it is not one.
func (r reply) object(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil || m == nil {
		t.Fatalf("the answer (%d) is not a JSON object: %v: %s", r.status, err, r.body)
	}
	return m
}

// call is one HTTP request to the PDP.
type call struct {
	method, url string
	body        string
	header      map[string]string // nil: Content-Type application/json and the PEP's token
	client      *http.Client
}

var plainClient = &http.Client{Timeout: 10 * time.Second}

func do(t testing.TB, c call) reply {
	t.Helper()
	if c.method == "" {
		c.method = http.MethodPost
	}
	req, err := http.NewRequest(c.method, c.url, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.header == nil {
		c.header = map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + pepToken}
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	client := c.client
	if client == nil {
		client = plainClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, body}
}

// ask POSTs v (marshalled unless a string) to the PDP's path as the test PEP.
func (p *pdp) ask(t testing.TB, path string, v any) reply {
	t.Helper()
	return do(t, call{url: p.base + path, body: jsonText(t, v)})
}

func jsonText(t testing.TB, v any) string {
	t.Helper()
	if s, ok := v.(string); ok {
		return s
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// verdict is one AuthZEN decision as the tests compare it.
type verdict struct {
	Decision bool
	Code     string // context.code; for an error, "error"
	Status   int    // context.status, or context.error.status; 0 on a permit
	Rule     string
	Context  map[string]any
}

func readVerdict(t testing.TB, v any) verdict {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("a decision is not an object: %v", v)
	}
	d, ok := m["decision"].(bool)
	if !ok {
		t.Fatalf("decision is not a boolean: %v", m)
	}
	out := verdict{Decision: d}
	if c, ok := m["context"]; ok {
		if out.Context, ok = c.(map[string]any); !ok {
			t.Fatalf("context is not an object: %v", m)
		}
	}
	out.Code, _ = out.Context["code"].(string)
	out.Rule, _ = out.Context["rule"].(string)
	if s, ok := out.Context["status"].(float64); ok {
		out.Status = int(s)
	}
	if e, ok := out.Context["error"].(map[string]any); ok {
		out.Code = "error"
		if s, ok := e["status"].(float64); ok {
			out.Status = int(s)
		}
	}
	return out
}

// evaluation asks one evaluation and reads its decision; the answer must be 200 JSON.
func (p *pdp) evaluation(t testing.TB, v any) verdict {
	t.Helper()
	r := p.ask(t, authzen.EvaluationPath, v)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("evaluation: %d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	return readVerdict(t, r.object(t))
}

// evaluations asks a batch and reads its decisions; the answer must be 200 JSON with an
// evaluations array and no top-level decision.
func (p *pdp) evaluations(t testing.TB, v any) []verdict {
	t.Helper()
	r := p.ask(t, authzen.EvaluationsPath, v)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("evaluations: %d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	m := r.object(t)
	arr, ok := m["evaluations"].([]any)
	if !ok {
		t.Fatalf("evaluations answered without an evaluations array: %s", r.body)
	}
	if _, ok := m["decision"]; ok {
		t.Errorf("a batch answer carries a top-level decision: %s", r.body)
	}
	out := make([]verdict, len(arr))
	for i, v := range arr {
		out[i] = readVerdict(t, v)
	}
	return out
}

// httpEval is the evaluation of an agent's HTTP request.
func httpEval(agent, method, url string, ctx map[string]any) map[string]any {
	ev := map[string]any{
		"subject":  map[string]any{"type": "agent", "id": agent},
		"action":   map[string]any{"name": method},
		"resource": map[string]any{"type": "http", "id": url},
	}
	if ctx != nil {
		ev["context"] = ctx
	}
	return ev
}

// pki is a test SPIFFE trust domain, acme.internal: a CA and SVIDs it issues.
type pki struct {
	ca     *x509.Certificate
	key    *ecdsa.PrivateKey
	bundle *x509bundle.Bundle
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{{Scheme: "spiffe", Host: "acme.internal"}}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{ca: ca, key: key, bundle: x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("acme.internal"), []*x509.Certificate{ca})}
}

var serial = struct {
	sync.Mutex
	n int64
}{n: 1}

// svid issues an X.509-SVID for id.
func (p *pki) svid(t testing.TB, id string) *x509svid.SVID {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Lock()
	serial.n++
	n := serial.n
	serial.Unlock()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(n), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: spiffeid.RequireFromString(id), Certificates: []*x509.Certificate{leaf}, PrivateKey: key}
}

// client is an HTTPS client of the AuthZEN TLS listener presenting s (none when nil), trusting
// the PKI's CA for the server.
func (p *pki) client(s *x509svid.SVID) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool})
			return err
		}}
	if s != nil {
		c.Certificates = []tls.Certificate{{Certificate: [][]byte{s.Certificates[0].Raw}, PrivateKey: s.PrivateKey, Leaf: s.Certificates[0]}}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c}}
}

type serverConfig = server.Config
