package service

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	"github.com/agentauthz/agentauthz/internal/server"
)

// HTTPConfig secures the HTTP listener, which serves health, readiness, metrics, the approval
// API and console, Slack's interactions and the AuthZEN API.
type HTTPConfig struct {
	// TLSCert and TLSKey are PEM files of a certificate (chain) and its key: the listener then
	// serves TLS 1.2 or later with them, reloaded when the files change (looked at when a
	// client connects, at most every server.CertCheckEvery) and at once on SIGHUP.
	TLSCert, TLSKey string
	// TLSSPIFFE serves the listener over TLS with agentauthz's X.509-SVID from the Workload API
	// (SPIFFEConfig.Socket), rotated without restart. Browsers do not trust it: it is for API
	// and AuthZEN clients that verify SVIDs.
	TLSSPIFFE bool
	// BehindTLSProxy says browsers reach the listener through a TLS-terminating proxy: the
	// console's session cookie is Secure even on plaintext to loopback. Nothing else (no
	// X-Forwarded-* header) is taken from the proxy; throttling sees the proxy's address.
	BehindTLSProxy bool
}

func (h HTTPConfig) tls() bool { return h.TLSCert != "" || h.TLSSPIFFE }

// checkListeners refuses, before anything is opened or logged, HTTP flags that do not go
// together, and a listener that would serve plaintext on a non-loopback address without
// Insecure: the refusal is then the one line serve prints.
func (c Config) checkListeners() error {
	h := c.HTTP
	switch {
	case (h.TLSCert == "") != (h.TLSKey == ""):
		return errors.New("--http-tls-cert and --http-tls-key go together")
	case h.TLSCert != "" && h.TLSSPIFFE:
		return errors.New("--http-tls-cert and --http-tls-spiffe each give the HTTP listener a certificate; choose one")
	case h.TLSSPIFFE && c.SPIFFE.Socket == "":
		return errors.New("--http-tls-spiffe needs --spiffe-socket: the SVID comes from the Workload API")
	case c.HTTPAddr == "" && h.tls():
		return errors.New("--http-tls-cert and --http-tls-spiffe need an HTTP listener (--http-addr)")
	case c.HTTPAddr == "" && h.BehindTLSProxy:
		return errors.New("--http-behind-tls-proxy needs an HTTP listener (--http-addr)")
	}
	spiffeTLS := c.SPIFFE.Socket != ""
	if err := server.RefusePlaintext("gRPC", c.GRPCAddr, spiffeTLS, c.Insecure); err != nil {
		return err
	}
	if err := server.CheckSocketAccess(c.GRPCAddr, c.GRPCSocket); err != nil {
		return err
	}
	if c.HTTPAddr != "" {
		if err := server.RefusePlaintext("HTTP", c.HTTPAddr, h.tls(), c.Insecure); err != nil {
			return err
		}
	}
	if c.AuthZEN.Addr != "" {
		if err := server.RefusePlaintext("AuthZEN", c.AuthZEN.Addr, spiffeTLS, c.Insecure); err != nil {
			return err
		}
	}
	return nil
}

// CheckFlags reports listener settings that cannot be served as given (flags that go together,
// a plaintext listener refused on a non-loopback address), before anything is opened: Start
// reports them too, but a command line tells them apart from failures to start.
func (c Config) CheckFlags() error { return c.checkListeners() }

// openHTTPTLS loads the HTTP listener's certificate files, when given.
func openHTTPTLS(h HTTPConfig, log *slog.Logger) (*server.CertFiles, error) {
	if h.TLSCert == "" {
		return nil, nil
	}
	certs, err := server.LoadCertFiles(h.TLSCert, h.TLSKey, log)
	if err != nil {
		return nil, fmt.Errorf("--http-tls-cert, --http-tls-key: %v", err)
	}
	return certs, nil
}

// httpTLS is the HTTP listener's TLS configuration, or nil for plaintext, and what it is, for
// the start-up log line.
func (s *Service) httpTLS() (*tls.Config, string) {
	switch {
	case s.certs != nil:
		return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.GetCertificate}, "files"
	case s.cfg.HTTP.TLSSPIFFE:
		return s.spiffe.httpTLS, "spiffe"
	case s.cfg.HTTP.BehindTLSProxy:
		return nil, "proxy"
	}
	return nil, "off"
}
