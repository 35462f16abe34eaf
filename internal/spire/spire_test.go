package spire

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindBinaries(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("PATH", t.TempDir())
	t.Setenv(EnvVar, "")
	want := filepath.Join(cache, "agentauthz", "spire-v"+Version)
	if CacheDir() != want {
		t.Errorf("CacheDir() = %s, want %s", CacheDir(), want)
	}
	// Missing: the error says how to build it, into the cache directory.
	_, err := FindBinaries()
	if err == nil || !strings.Contains(err.Error(), BuildCommand(want)) || !strings.Contains(err.Error(), EnvVar) {
		t.Errorf("got %v, want how to build SPIRE into %s", err, want)
	}
	// Built there: found.
	for _, name := range []string{"spire-server", "spire-agent"} {
		if err := os.MkdirAll(want, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(want, name), []byte("#!/bin/sh\n"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := FindBinaries(); err != nil || b.Server != filepath.Join(want, "spire-server") || b.Agent != filepath.Join(want, "spire-agent") {
		t.Errorf("got %+v, %v; want the cache directory's", b, err)
	}
	// A set variable without the programs is a mistake, not a reason to look elsewhere.
	t.Setenv(EnvVar, t.TempDir())
	if _, err := FindBinaries(); err == nil || !strings.Contains(err.Error(), "has no executable spire-server") {
		t.Errorf("got %v, want an error naming the missing spire-server", err)
	}
}

func TestDefaultConfigs(t *testing.T) {
	server, err := DefaultServerConfig(ServerParams{TrustDomain: "example.org", BindAddress: "127.0.0.1", BindPort: 8081,
		Socket: "/s/server.sock", DataDir: "/s/server"})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := DefaultAgentConfig(AgentParams{TrustDomain: "example.org", ServerAddress: "127.0.0.1", ServerPort: 8081,
		Socket: "/s/agent.sock", DataDir: "/s/agent", TrustBundle: "/s/bundle.pem", JoinToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	for conf, wants := range map[string][]string{
		string(server): {`trust_domain = "example.org"`, `bind_port = "8081"`, `socket_path = "/s/server.sock"`, `"/s/server/datastore.sqlite3"`},
		string(agent):  {`join_token = "tok"`, `trust_bundle_path = "/s/bundle.pem"`, `WorkloadAttestor "unix"`, "discover_workload_path = true"},
	} {
		for _, want := range wants {
			if !strings.Contains(conf, want) {
				t.Errorf("configuration lacks %s:\n%s", want, conf)
			}
		}
	}
}
