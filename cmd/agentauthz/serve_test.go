package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestServeRefusesPlaintextHTTP: plaintext HTTP on a non-loopback address without --insecure,
// and HTTP TLS flags that cannot be served, are one line and exit 2, before anything is loaded,
// logged or listened on.
func TestServeRefusesPlaintextHTTP(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--http-addr", "0.0.0.0:0"}, "agentauthz serve: server: refusing plaintext HTTP on non-loopback address 0.0.0.0:0; "},
		{[]string{"--http-addr", "[::]:0", "--http-behind-tls-proxy"}, "refusing plaintext HTTP on non-loopback address [::]:0; "},
		{[]string{"--http-tls-cert", missing}, "--http-tls-cert and --http-tls-key go together"},
		{[]string{"--http-tls-spiffe"}, "--http-tls-spiffe needs --spiffe-socket"},
		{[]string{"--http-tls-cert", missing, "--http-tls-key", missing}, "agentauthz serve: --http-tls-cert, --http-tls-key: open "},
		{[]string{"--http-addr", "", "--http-behind-tls-proxy"}, "--http-behind-tls-proxy needs an HTTP listener"},
	} {
		for _, credentialSet := range []bool{true, false} {
			t.Run(fmt.Sprintf("credential=%v/%s", credentialSet, strings.Join(tc.args, " ")), func(t *testing.T) {
				if credentialSet {
					setCredential(t)
				} else {
					unsetCredential(t)
				}
				t.Setenv("AGENTAUTHZ_DEMO_APPROVER_TOKEN", "") // a generated token would be logged first
				args := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--data-dir", filepath.Join(t.TempDir(), "data")}, tc.args...)
				r := cli(t, args...)
				r.want(t, exitUsage)
				oneLine(t, "stderr", r.stderr)
				if !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
					t.Errorf("stdout %q, stderr %q; want %q", r.stdout, r.stderr, tc.want)
				}
			})
		}
	}
}

// TestServeHelpHTTP: serve's help says what the HTTP listener serves and how it is secured.
func TestServeHelpHTTP(t *testing.T) {
	r := cli(t, "serve", "-h")
	r.want(t, exitOK)
	help := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  -(\S+).*\n((?:    \s*.*\n)+)`).FindAllStringSubmatch(r.stderr, -1) {
		help[m[1]] = strings.Join(strings.Fields(m[2]), " ")
	}
	for flag, wants := range map[string][]string{
		"http-addr":             {"health", "readiness", "metrics", "approvals API", "console", "Slack interactions", "AuthZEN", "loopback"},
		"http-tls-cert":         {"TLS 1.2", "reloaded", "SIGHUP"},
		"http-tls-key":          {"key"},
		"http-tls-spiffe":       {"--spiffe-socket", "SVID", "browsers"},
		"http-behind-tls-proxy": {"Secure", "nothing else"},
		"insecure":              {"gRPC", "HTTP", "AuthZEN"},
	} {
		for _, want := range wants {
			if !strings.Contains(help[flag], want) {
				t.Errorf("-%s help %q does not say %q", flag, help[flag], want)
			}
		}
	}
}
