package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// lint prints one revision for one policy, however it is reached: the relative path, the
// absolute one, a symbolic link, a copy elsewhere, from another working directory.
func TestLintRevisionIgnoresThePath(t *testing.T) {
	setCredential(t)
	want := demoRevision(t)
	abs, err := filepath.Abs(demoDir)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	link := filepath.Join(root, "policy-link")
	if err := os.Symlink(abs, link); err != nil {
		t.Skipf("symbolic links: %v", err)
	}
	copied := filepath.Join(root, "elsewhere", "policy")
	if err := os.MkdirAll(copied, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(abs)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(abs, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(copied, e.Name()), data, 0o644)
	}
	revision := regexp.MustCompile(`\(revision ([0-9a-f]{12})\)`)
	check := func(what, path string) {
		t.Helper()
		r := cli(t, "lint", path)
		r.want(t, exitOK)
		if m := revision.FindStringSubmatch(r.stdout); m == nil || m[1] != want {
			t.Errorf("lint through %s: %q, want revision %s", what, r.stdout, want)
		}
	}
	check("the absolute path", abs)
	check("a symbolic link", link)
	check("a copy", copied)
	t.Chdir(root)
	check("a path relative to another directory", filepath.Join("elsewhere", "policy"))
}
