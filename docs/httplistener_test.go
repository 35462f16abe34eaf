package docs

import (
	"os"
	"strings"
	"testing"
)

// TestHTTPListenerDocumented: the README, where the flags are listed, and operating.md say how
// the HTTP listener is secured: its TLS flags, --insecure, the proxy setting and the sign-in
// throttle with its metrics.
func TestHTTPListenerDocumented(t *testing.T) {
	for file, wants := range map[string][]string{
		readmeFile: {"--http-tls-cert", "--http-tls-key", "--http-tls-spiffe", "--http-behind-tls-proxy", "--insecure",
			"agentauthz_signin_failures_total{surface}", "Retry-After",
			"docs/operating.md#the-http-listener-tls-proxies-and-sign-in-throttling"},
		opsFile: {"## The HTTP listener: TLS, proxies and sign-in throttling", "--http-tls-cert FILE --http-tls-key FILE",
			"SIGHUP", "TLS 1.2", "--http-tls-spiffe", "--http-behind-tls-proxy", "`Secure`", "X-Forwarded-For",
			"refusing plaintext HTTP on non-loopback address", "--insecure", "agentauthz_signin_failures_total{surface}",
			"agentauthz_signin_throttled_total{surface}", "`429` with `Retry-After`", "/64"},
	} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range wants {
			if !strings.Contains(string(data), want) {
				t.Errorf("%s does not mention %q", file, want)
			}
		}
	}
}
