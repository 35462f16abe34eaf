package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/policy"
)

// countKey counts the mapping entries whose key is key, at any depth of the YAML document src.
func countKey(t *testing.T, src []byte, key string) int {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	var count func(n *yaml.Node) int
	count = func(n *yaml.Node) int {
		c := 0
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == key {
					c++
				}
			}
		}
		for _, child := range n.Content {
			c += count(child)
		}
		return c
	}
	return count(&doc)
}

// The policy the agentauthz set-ups serve is the demo policy's files, the policy files without
// a response key anywhere and every other file as embedded, and it loads as serve --policy
// loads it.
func TestUnguardedDemo(t *testing.T) {
	dir := t.TempDir()
	removed, err := writeUnguardedDemo(dir)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := fs.Sub(demo.Files, demo.Dir)
	if err != nil {
		t.Fatal(err)
	}
	shippedRules, files := 0, 0
	err = fs.WalkDir(sub, ".", func(name string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		files++
		want, err := fs.ReadFile(sub, name)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			return err
		}
		if !policy.IsPolicyFile(name) {
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the embedded file", name)
			}
			return nil
		}
		shippedRules += countKey(t, want, "response")
		if n := countKey(t, got, "response"); n != 0 {
			t.Errorf("%s still has %d response keys", name, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	written := 0
	err = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			written++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if written != files {
		t.Errorf("%d files written, the demo policy has %d", written, files)
	}
	if shippedRules == 0 || removed != shippedRules {
		t.Errorf("removed %d response rules; the demo policy has %d", removed, shippedRules)
	}
	if _, err := loadPolicyDir(dir, serveEnv); err != nil {
		t.Fatalf("the written policy does not load: %v", err)
	}
}

// Without the credential serve gets, the written policy does not load: the check before the
// set-ups start reads the same credentials serve does.
func TestUnguardedDemoNeedsCredential(t *testing.T) {
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "")
	dir := t.TempDir()
	if _, err := writeUnguardedDemo(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := loadPolicyDir(dir, nil); err == nil {
		t.Fatal("loaded without AGENTAUTHZ_HELPDESK_TOKEN")
	}
}

// The scenarios guarded are those whose route has a response rule in the demo policy as
// shipped: the ticket (getTicket) and the BI API's GraphQL endpoint.
func TestGuardedScenarios(t *testing.T) {
	dir := t.TempDir()
	if _, err := writeUnguardedDemo(dir); err != nil {
		t.Fatal(err)
	}
	unguarded, err := loadPolicyDir(dir, serveEnv)
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := loadShippedDemo()
	if err != nil {
		t.Fatal(err)
	}
	scenarios := httpScenarios()
	if err := markGuarded(scenarios, shipped, unguarded); err != nil {
		t.Fatal(err)
	}
	var guarded []string
	for _, sc := range scenarios {
		if sc.guarded {
			guarded = append(guarded, sc.name)
		}
	}
	if want := []string{"header-only", "graphql"}; !slices.Equal(guarded, want) {
		t.Errorf("guarded scenarios %v, want %v", guarded, want)
	}
	// Against the shipped policy on both sides, the unguarded side names a response rule.
	if err := markGuarded(httpScenarios(), shipped, shipped); err == nil {
		t.Error("markGuarded accepted a policy with response rules as the one without")
	}
}

// withoutKey removes entries at every depth, in block and flow mappings, and keeps the rest.
func TestWithoutKey(t *testing.T) {
	src := []byte("a: 1\nresponse: {x: 1}\nb:\n  - response: 2\n    c: 3\n  - {d: 4, response: 5}\n")
	out, n, err := withoutKey(src, "response")
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("removed %d, want 3", n)
	}
	var got any
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": 1, "b": []any{map[string]any{"c": 3}, map[string]any{"d": 4}}}
	if gb, wb := mustYAML(t, got), mustYAML(t, want); gb != wb {
		t.Errorf("got\n%s\nwant\n%s", gb, wb)
	}
	if _, _, err := withoutKey([]byte("a: [\n"), "response"); err == nil {
		t.Error("accepted broken YAML")
	}
}

func mustYAML(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
