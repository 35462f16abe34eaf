package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

// TestHTTPPlaintextOnlyOnLoopback: the HTTP listener (approvers' tokens, console sessions, PEP
// tokens) serves plaintext on a non-loopback address only with Insecure, as gRPC does; with
// TLS it may listen anywhere.
func TestHTTPPlaintextOnlyOnLoopback(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", ":0", "agentauthz.example:9002", "10.1.2.3:9002"} {
		srv, err := server.Start(server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: addr, Store: store})
		if err == nil {
			srv.Shutdown()
			t.Errorf("server.Start(HTTPAddr %q) served plaintext HTTP on a non-loopback address", addr)
			continue
		}
		want := "server: refusing plaintext HTTP on non-loopback address " + addr + "; "
		if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "--insecure") || strings.Contains(err.Error(), "\n") {
			t.Errorf("server.Start(HTTPAddr %q): %v; want one line starting %q and naming --insecure", addr, err, want)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		if addr == "[::1]:0" && !ipv6Loopback() {
			continue
		}
		srv, err := server.Start(server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: addr, Store: store})
		if err != nil {
			t.Errorf("server.Start(HTTPAddr %q): %v", addr, err)
			continue
		}
		srv.Shutdown()
	}
	var logs syncBuffer
	srv := servertest.Start(t, server.Config{HTTPAddr: "0.0.0.0:0", Insecure: true, Store: store,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	_, port, _ := net.SplitHostPort(srv.HTTPAddr().String())
	if code, _ := httpGet(t, "http://127.0.0.1:"+port+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz on the insecure listener = %d", code)
	}
	if !strings.Contains(logs.String(), "serving plaintext HTTP on a non-loopback address") {
		t.Errorf("no warning for plaintext HTTP with Insecure:\n%s", logs.String())
	}

	if _, err := server.Start(server.Config{GRPCAddr: "127.0.0.1:0", HTTPTLS: &tls.Config{}, Store: store}); err == nil {
		t.Error("HTTP TLS without an HTTP listener was accepted")
	}
}

func ipv6Loopback() bool {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// syncBuffer is a log destination tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// servedCert is the certificate a new TLS connection to addr is served.
func servedCert(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) // #nosec: only looking
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestHTTPTLS: with HTTPTLS the HTTP listener serves every route over TLS 1.2 or later (even
// if its configuration allows older), and refuses older handshakes and plaintext requests; a
// non-loopback address needs no Insecure then.
func TestHTTPTLS(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	dir := t.TempDir()
	certPath, keyPath, cert := servertest.KeyPair(t, dir)
	certs, err := server.LoadCertFiles(certPath, keyPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, server.Config{HTTPAddr: "0.0.0.0:0", Store: store,
		HTTPTLS: &tls.Config{MinVersion: tls.VersionTLS10, GetCertificate: certs.GetCertificate}})
	_, port, _ := net.SplitHostPort(srv.HTTPAddr().String())
	addr := "127.0.0.1:" + port

	resp, err := servertest.HTTPSClient(cert).Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("GET /healthz over TLS: %d, TLS %+v", resp.StatusCode, resp.TLS)
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v}) // #nosec: testing the refusal
		if err == nil {
			conn.Close()
			t.Errorf("a TLS %x handshake was accepted", v)
		}
	}
	if code, _ := httpGet(t, "http://"+addr+"/healthz"); code == http.StatusOK {
		t.Error("a plaintext request to the TLS listener was answered")
	}
}

// TestCertFilesReload: the HTTP listener's certificate files are read again when they change,
// looked at on a handshake at most every CertCheckEvery, and at once on Reload (SIGHUP); a pair
// that does not load is logged once and the last good certificate keeps serving.
func TestCertFilesReload(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	dir := t.TempDir()
	certPath, keyPath, first := servertest.KeyPair(t, dir)
	var logs syncBuffer
	certs, err := server.LoadCertFiles(certPath, keyPath, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{now: time.Now()}
	certs.Clock = clock.Now
	srv := servertest.Start(t, server.Config{HTTPAddr: "127.0.0.1:0", Store: store,
		HTTPTLS: &tls.Config{GetCertificate: certs.GetCertificate}})
	addr := srv.HTTPAddr().String()
	if got := servedCert(t, addr); !got.Equal(first) {
		t.Fatalf("served %s, want the first certificate", got.Subject)
	}

	_, _, second := servertest.KeyPair(t, dir) // the files change
	if got := servedCert(t, addr); !got.Equal(first) {
		t.Errorf("served %s before CertCheckEvery passed, want the first certificate still", got.Subject)
	}
	clock.Advance(server.CertCheckEvery)
	if got := servedCert(t, addr); !got.Equal(second) {
		t.Errorf("served %s after the files changed and CertCheckEvery passed, want %s", got.Subject, second.Subject)
	}
	resp, err := servertest.HTTPSClient(second).Get("https://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz trusting the new certificate: %v", err)
	}
	resp.Body.Close()

	// A key that does not match: logged once, the second certificate keeps serving.
	_, otherKey, _ := servertest.KeyPair(t, t.TempDir())
	key, err := os.ReadFile(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := certs.Reload(); err == nil {
		t.Error("Reload of a certificate with another's key succeeded")
	}
	for range 3 {
		clock.Advance(server.CertCheckEvery)
		if got := servedCert(t, addr); !got.Equal(second) {
			t.Errorf("served %s after a bad reload, want the last good certificate", got.Subject)
		}
	}
	if n := strings.Count(logs.String(), "did not reload"); n != 1 {
		t.Errorf("the bad pair was logged %d times, want once:\n%s", n, logs.String())
	}

	// Reload (SIGHUP) takes new files at once, without waiting for CertCheckEvery.
	_, _, third := servertest.KeyPair(t, dir)
	if err := certs.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := servedCert(t, addr); !got.Equal(third) {
		t.Errorf("served %s after Reload, want %s", got.Subject, third.Subject)
	}
	if got := certs.Leaf(); !got.Equal(third) {
		t.Errorf("Leaf = %s, want %s", got.Subject, third.Subject)
	}

	if _, err := server.LoadCertFiles(filepath.Join(dir, "missing.pem"), keyPath, nil); err == nil {
		t.Error("LoadCertFiles of a missing file succeeded")
	}
	if _, err := server.LoadCertFiles(certPath, otherKey, nil); err == nil {
		t.Error("LoadCertFiles of a certificate with another's key succeeded")
	}
}
