//go:build linux

package spiffetest

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/agentauthz/agentauthz/internal/spire"
	"github.com/agentauthz/agentauthz/internal/spire/spiretest"
)

// TestHTTPListenerSVID: with --http-tls-spiffe, `agentauthz serve` serves its HTTP listener
// (here on every address, without --insecure) over TLS with its X.509-SVID from the Workload
// API: a client that verifies SVIDs against the trust bundle reaches /readyz and AuthZEN; one
// expecting another identity, and plaintext, are refused.
func TestHTTPListenerSVID(t *testing.T) {
	dir := spiretest.ShortTempDir(t)
	s := spiretest.Start(t, spire.Options{Dir: dir, TrustDomain: trustDomain, Node: nodeID})
	azBin := buildAgentauthz(t, dir)
	register(t, s, agentauthzID, azBin, 0)
	register(t, s, envoyID, spiretest.TestBinary(t), 0)
	spiretest.WaitForSVIDs(t, s, envoyID)

	_, port, _ := net.SplitHostPort(freeAddr(t))
	const pepToken = "spiffetest-http-pep-token"
	az := startProcess(t, dir, "agentauthz", []string{"AGENTAUTHZ_DEMO_PEP_TOKEN=" + pepToken}, azBin, "serve",
		"--spiffe-socket", s.Agent.Addr(), "--grpc-allowed-clients", envoyID.String(), "--grpc-addr", freeAddr(t),
		"--http-addr", "0.0.0.0:"+port, "--http-tls-spiffe",
		"--data-dir", filepath.Join(dir, "agentauthz-data"), "--decision-log", "off")
	base := "https://127.0.0.1:" + port
	src := x509Source(t, s, envoyID)
	client := func(id spiffeid.ID) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: tlsconfig.TLSClientConfig(src, tlsconfig.AuthorizeID(id))}}
	}
	var served *tls.ConnectionState
	waitFor(t, "agentauthz /readyz over TLS with its SVID", az, func() error {
		resp, err := client(agentauthzID).Get(base + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d", resp.StatusCode)
		}
		served = resp.TLS
		return nil
	})
	if id, err := x509svid.IDFromCert(served.PeerCertificates[0]); err != nil || id != agentauthzID || served.Version < tls.VersionTLS12 {
		t.Errorf("served %v (%v) over TLS %x, want %s over TLS 1.2+", id, err, served.Version, agentauthzID)
	}

	req, _ := http.NewRequest("POST", base+"/access/v1/evaluation", strings.NewReader(
		`{"subject":{"type":"agent","id":"spiffe://acme.internal/agent/helpdesk"},"action":{"name":"GET"},`+
			`"resource":{"type":"http","id":"https://helpdesk.acme.internal/v1/tickets/4711"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+pepToken)
	resp, err := client(agentauthzID).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), `{"decision":true`) {
		t.Errorf("AuthZEN over the HTTP listener's TLS: %d %s", resp.StatusCode, body)
	}

	if _, err := client(spiffeid.RequireFromPath(trustDomain, "/not-agentauthz")).Get(base + "/healthz"); err == nil {
		t.Error("a client expecting another identity accepted the HTTP listener's certificate")
	}
	if resp, err := http.Get("http://127.0.0.1:" + port + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plaintext HTTP was answered")
		}
	}
}
