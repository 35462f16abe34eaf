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
		code int
	}{
		{[]string{"--http-addr", "0.0.0.0:0"}, "agentauthz serve: server: refusing plaintext HTTP on non-loopback address 0.0.0.0:0; ", exitUsage},
		{[]string{"--http-addr", "[::]:0", "--http-behind-tls-proxy"}, "refusing plaintext HTTP on non-loopback address [::]:0; ", exitUsage},
		{[]string{"--http-tls-cert", missing}, "--http-tls-cert and --http-tls-key go together", exitUsage},
		{[]string{"--http-tls-spiffe"}, "--http-tls-spiffe needs --spiffe-socket", exitUsage},
		{[]string{"--http-tls-cert", missing, "--http-tls-key", missing}, "agentauthz serve: --http-tls-cert, --http-tls-key: open ", exitError},
		{[]string{"--http-addr", "", "--http-behind-tls-proxy"}, "--http-behind-tls-proxy needs an HTTP listener", exitUsage},
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
				r.want(t, tc.code)
				oneLine(t, "stderr", r.stderr)
				if !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
					t.Errorf("stdout %q, stderr %q; want %q", r.stdout, r.stderr, tc.want)
				}
			})
		}
	}
}

// flagHelp reads a command's help: each flag's help text, by name, its lines joined.
func flagHelp(t *testing.T, help string) map[string]string {
	t.Helper()
	out := map[string]string{}
	name := ""
	flagLine := regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)(?: \S+)?\s{2,}(.*)$`)
	for _, line := range strings.Split(help, "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			name = m[1]
			out[name] = m[2]
			continue
		}
		if name != "" && strings.HasPrefix(line, "        ") {
			out[name] += " " + strings.TrimSpace(line)
			continue
		}
		name = ""
	}
	if len(out) == 0 {
		t.Fatalf("no flags in the help:\n%s", help)
	}
	return out
}

// TestServeHelpHTTP: serve's help says what the HTTP listener serves and how it is secured.
func TestServeHelpHTTP(t *testing.T) {
	r := cli(t, "serve", "-h")
	r.want(t, exitOK)
	help := flagHelp(t, r.stdout)
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

// TestServeSocketFlags: --grpc-socket-mode and --grpc-socket-group that cannot apply are one
// line and exit 2, before anything is loaded or listened on.
func TestServeSocketFlags(t *testing.T) {
	sock := "unix:" + filepath.Join(t.TempDir(), "authz.sock")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--grpc-socket-mode", "0660"}, "agentauthz serve: --grpc-socket-mode, --grpc-socket-group: a socket mode and group apply to a unix socket (unix:/path), not to 127.0.0.1:0\n"},
		{[]string{"--grpc-addr", sock, "--grpc-socket-group", "0"}, "agentauthz serve: --grpc-socket-mode, --grpc-socket-group: a socket group needs a socket mode that lets the group write, like 0660\n"},
		{[]string{"--grpc-addr", sock, "--grpc-socket-mode", "0660", "--grpc-socket-group", "no-such-group-agentauthz"}, "socket group \"no-such-group-agentauthz\""},
		{[]string{"--grpc-addr", sock, "--grpc-socket-mode", "u=rw"}, "agentauthz serve: --grpc-socket-mode \"u=rw\": socket mode \"u=rw\" is not three or four octal digits, like 0660\n"},
		{[]string{"--grpc-addr", sock, "--grpc-socket-mode", "2660"}, "setuid, setgid or sticky"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			unsetCredential(t)
			args := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--data-dir", filepath.Join(t.TempDir(), "data")}, tc.args...)
			r := cli(t, args...)
			r.want(t, exitUsage)
			oneLine(t, "stderr", r.stderr)
			if !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
				t.Errorf("stdout %q, stderr %q; want %q", r.stdout, r.stderr, tc.want)
			}
		})
	}
	r := cli(t, "serve", "-h")
	for _, want := range []string{"--grpc-socket-mode", "0660", "--grpc-socket-group", "Envoy"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("serve -h does not say %q", want)
		}
	}
}
