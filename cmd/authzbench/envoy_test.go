package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/envoyproc"
)

// The Envoy configurations the envoy mode runs are the shipped front proxy with only addresses
// and the SDS socket rewritten, and for "none" the ext_authz filter removed: real Envoy accepts
// each, so the harness keeps running as envoy/front-proxy.yaml changes.
func TestFrontProxyConfigs(t *testing.T) {
	envoyproc.Binary(t) // skip, or fail under CI, without Envoy
	src, err := os.ReadFile("../../envoy/front-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{"none", "noop", "agentauthz"} {
		s := &setup{name: name, addr: "127.0.0.1:18443", admin: "127.0.0.1:19901"}
		conf, err := renderFrontProxy(src, s, "127.0.0.1:19001", "127.0.0.1:18001", "127.0.0.1:18002", filepath.Join(dir, "sds.sock"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if hasFilter := strings.Contains(string(conf), "- name: envoy.filters.http.ext_authz\n"); hasFilter != (name != "none") {
			t.Errorf("%s: ext_authz filter present: %v", name, hasFilter)
		}
		for _, want := range []string{"port_value: 18443", "port_value: 19901", "port_value: 19001", "path: " + filepath.Join(dir, "sds.sock")} {
			if name != "none" && !strings.Contains(string(conf), want) {
				t.Errorf("%s: %q not rewritten", name, want)
			}
		}
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, conf, 0o600); err != nil {
			t.Fatal(err)
		}
		envoyproc.Validate(t, path)
	}
}
