package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
)

// checkAuthZEN refuses an AuthZEN listener without the API, TLS without the listener, and
// plaintext on a non-loopback address without Insecure: bearer tokens would cross the network
// in the clear.
func checkAuthZEN(cfg *Config) error {
	switch {
	case cfg.AuthZENAddr == "" && cfg.AuthZENTLS != nil:
		return errors.New("server: AuthZEN TLS needs an AuthZEN listener address")
	case cfg.AuthZENAddr == "":
		return nil
	case cfg.AuthZEN == nil:
		return errors.New("server: an AuthZEN listener needs the AuthZEN configuration")
	}
	if _, _, err := net.SplitHostPort(cfg.AuthZENAddr); err != nil {
		return fmt.Errorf("server: AuthZEN listener %q is not host:port", cfg.AuthZENAddr)
	}
	if err := RefusePlaintext("AuthZEN", cfg.AuthZENAddr, cfg.AuthZENTLS != nil, cfg.Insecure); err != nil {
		return err
	}
	if cfg.AuthZENTLS == nil && !isLoopback(cfg.AuthZENAddr) {
		cfg.Log.Warn("serving plaintext AuthZEN on a non-loopback address: PEP tokens cross the network in the clear", "addr", cfg.AuthZENAddr)
	}
	return nil
}

// plaintextHints say how to serve each listener with TLS instead.
var plaintextHints = map[string]string{
	"gRPC": "use a loopback address or a unix socket, or pass --insecure",
	"HTTP": "serve it with TLS (--http-tls-cert and --http-tls-key, or --http-tls-spiffe) or on loopback " +
		"(behind a TLS-terminating proxy on this host, with --http-behind-tls-proxy), or pass --insecure",
	"AuthZEN": "serve it with SPIFFE TLS (--spiffe-socket) or on loopback, or pass --insecure",
}

// RefusePlaintext is Start's refusal to serve listener ("gRPC", "HTTP" or "AuthZEN") on addr
// without TLS: nil on a loopback address or a unix socket (unix:/path), with TLS, or when
// insecure allows it; otherwise the one-line error saying what to do. Callers check it before
// opening anything, so that the refusal is the only thing said.
func RefusePlaintext(listener, addr string, tls, insecure bool) error {
	if tls || insecure || strings.HasPrefix(addr, "unix:") || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("server: refusing plaintext %s on non-loopback address %s; %s", listener, addr, plaintextHints[listener])
}

// minTLS12 is c, never below TLS 1.2.
func minTLS12(c *tls.Config) *tls.Config {
	c = c.Clone()
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// SplitAddr reads "host:port" as TCP and "unix:/path" as a unix socket.
func SplitAddr(a string) (network, addr string, err error) {
	if p, ok := strings.CutPrefix(a, "unix:"); ok {
		if p == "" {
			return "", "", fmt.Errorf("server: %q: a unix socket needs a path, like unix:/run/agentauthz.sock", a)
		}
		return "unix", p, nil
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		return "", "", fmt.Errorf("server: %q is not host:port or unix:/path", a)
	}
	return "tcp", a, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
