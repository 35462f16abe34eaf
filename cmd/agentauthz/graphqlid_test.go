package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// The id does not depend on layout or comments, only on the document.
func TestGraphQLID(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.graphql")
	b := filepath.Join(dir, "b.graphql")
	c := filepath.Join(dir, "c.graphql")
	for name, doc := range map[string]string{
		a: `query Q { revenue(quarter: "2026-Q3") { total } }`,
		b: "# the same query, laid out differently\nquery Q {\n  revenue(quarter: \"2026-Q3\") {\n    total\n  }\n}\n",
		c: `query Q { revenue(quarter: "2026-Q4") { total } }`,
	} {
		if err := os.WriteFile(name, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := cli(t, "graphql-id", a, b, c)
	r.want(t, exitOK)
	m := regexp.MustCompile(`(?m)^([0-9a-f]{64})  (.+)$`).FindAllStringSubmatch(r.stdout, -1)
	if len(m) != 3 {
		t.Fatalf("want three ids, got:\n%s", r.stdout)
	}
	if m[0][1] != m[1][1] {
		t.Errorf("the same document laid out differently got two ids: %s, %s", m[0][1], m[1][1])
	}
	if m[0][1] == m[2][1] {
		t.Errorf("two different documents got the same id %s", m[0][1])
	}
}

func TestGraphQLIDBadInput(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.graphql")
	if err := os.WriteFile(bad, []byte("query {"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, "graphql-id", bad)
	r.want(t, exitError)
	oneLine(t, "stderr", r.stderr)
	r = cli(t, "graphql-id")
	r.want(t, exitUsage)
	oneLine(t, "stderr", r.stderr)
}
