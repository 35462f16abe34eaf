package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/agentauthz/agentauthz/internal/envoyproc"
)

// renderFrontProxy is front-proxy.yaml for set-up s: only addresses, ports and the SDS socket
// rewritten, as the tests do (internal/stack), and for "none" the ext_authz and ext_proc filters
// removed.
func renderFrontProxy(src []byte, s *setup, authz, helpdesk, bi, sds string) ([]byte, error) {
	addr := func(indent int, host, port string) string {
		return "address: " + host + "\n" + strings.Repeat(" ", indent) + "port_value: " + port
	}
	split := func(a string) (string, string) { h, p, _ := net.SplitHostPort(a); return h, p }
	r := map[string]string{}
	set := func(indent int, fromHost, fromPort, to string) {
		h, p := split(to)
		r[addr(indent, fromHost, fromPort)] = addr(indent, h, p)
	}
	set(6, "127.0.0.1", "9901", s.admin)
	set(10, "0.0.0.0", "8443", s.addr)
	set(22, "agentauthz.acme.internal", "9001", authz)
	set(22, "helpdesk-backend.acme.internal", "8443", helpdesk)
	set(22, "bi-backend.acme.internal", "8443", bi)
	set(22, "helpdesk-grpc-backend.acme.internal", "8443", helpdesk)
	r["path: /run/spire/agent/public/api.sock"] = "path: " + sds
	if s.name == setupNone {
		const from, to = "                  - name: envoy.filters.http.ext_authz\n", "                  - name: envoy.filters.http.router\n"
		i, j := strings.Index(string(src), from), strings.Index(string(src), to)
		if i < 0 || j < i {
			return nil, fmt.Errorf("the configuration has no ext_authz filter before its router")
		}
		r[string(src[i:j])] = ""
	}
	return envoyproc.Render(src, r)
}

// envoyReady: Envoy is LIVE, holds its SVID from SDS, and, where it checks requests, finds the
// ext_authz server healthy over mTLS.
func envoyReady(s *setup) error {
	get := func(path string) (string, error) {
		resp, err := http.Get("http://" + s.admin + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b)), err
	}
	if body, err := get("/ready"); err != nil || body != "LIVE" {
		return fmt.Errorf("not LIVE: %q %v", body, err)
	}
	if body, err := get("/certs"); err != nil || !strings.Contains(body, `"`+envoyID.String()+`"`) {
		return fmt.Errorf("no certificate for %s yet (%v)", envoyID, err)
	}
	if s.name != setupNone {
		body, err := get("/stats?filter=^cluster\\.agentauthz\\.membership_healthy$")
		if err != nil || body != "cluster.agentauthz.membership_healthy: 1" {
			return fmt.Errorf("the ext_authz server is not healthy to Envoy yet: %q %v", body, err)
		}
	}
	return nil
}
