package tokenfile_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/tokenfile"
)

func TestSetLookup(t *testing.T) {
	var s tokenfile.Set[string]
	s.AddToken("alpha", "a")
	h, ok := tokenfile.ParseHash(hex.EncodeToString(func() []byte { x := sha256.Sum256([]byte("beta")); return x[:] }()))
	if !ok {
		t.Fatal("ParseHash refused a sha256 hex")
	}
	s.Add(h, "b")
	for token, want := range map[string]string{"alpha": "a", "beta": "b"} {
		if got, ok := s.Lookup(token); !ok || got != want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", token, got, ok, want)
		}
	}
	if got, ok := s.Lookup("gamma"); ok {
		t.Errorf("Lookup(gamma) = %q, found", got)
	}
	var merged tokenfile.Set[string]
	merged.Merge(&s)
	if merged.Len() != 2 {
		t.Errorf("Merge: Len = %d, want 2", merged.Len())
	}
}

func TestParseHash(t *testing.T) {
	for _, bad := range []string{"", "zz", strings.Repeat("a", 63), strings.Repeat("a", 66)} {
		if _, ok := tokenfile.ParseHash(bad); ok {
			t.Errorf("ParseHash(%q) accepted", bad)
		}
	}
}

func TestDecode(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var v struct {
		Items []string `yaml:"items"`
	}
	if err := tokenfile.Decode(write("ok.yaml", "items: [a]\n"), &v, "list them"); err != nil || len(v.Items) != 1 {
		t.Fatalf("Decode = %v, %+v", err, v)
	}
	if err := tokenfile.Decode(write("empty.yaml", ""), &v, "list them"); err == nil || !strings.HasSuffix(err.Error(), "the file is empty; list them") {
		t.Errorf("empty file: %v", err)
	}
	if err := tokenfile.Decode(write("unknown.yaml", "itmes: [a]\n"), &v, "list them"); err == nil || !strings.Contains(err.Error(), "itmes") {
		t.Errorf("unknown key: %v", err)
	}
}
