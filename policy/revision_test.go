package policy

import (
	"os"
	"path/filepath"
	"testing"
)

// copyTree copies the regular files directly inside src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
		}
	}
}

// A policy's revision depends on its content only: the same files loaded through a relative
// path, an absolute one, another working directory, a symbolic link, or as an fs.FS, and a
// single file through two paths, have one revision, which replicas, CI, `lint` and `serve`
// print alike. The demo policy refers to a JSON Schema, a .proto file and a GraphQL schema,
// whose names count too.
func TestRevisionIgnoresHowThePolicyIsReached(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "deploy", "policy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyTree(t, "../internal/demo/policy", dir)
	link := filepath.Join(root, "current")
	if err := os.Symlink(filepath.Join("deploy", "policy"), link); err != nil {
		t.Skipf("symbolic links: %v", err)
	}
	secrets := Options{Secrets: func(SecretRef) (string, error) { return "x", nil }}
	load := func(t *testing.T, read func() ([]File, error)) string {
		t.Helper()
		files, err := read()
		if err != nil {
			t.Fatal(err)
		}
		snap, err := Load(files, secrets)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Revision()
	}
	want := load(t, func() ([]File, error) { return ReadPath(dir) })
	for name, read := range map[string]func() ([]File, error){
		"through a symbolic link":  func() ([]File, error) { return ReadPath(link) },
		"with a trailing slash":    func() ([]File, error) { return ReadPath(dir + string(filepath.Separator)) },
		"through a ./.. detour":    func() ([]File, error) { return ReadPath(filepath.Join(dir, "..", "policy")) },
		"as an fs.FS subdirectory": func() ([]File, error) { return ReadFS(os.DirFS(filepath.Join(root, "deploy")), "policy") },
		"as an fs.FS root":         func() ([]File, error) { return ReadFS(os.DirFS(dir), ".") },
	} {
		if got := load(t, read); got != want {
			t.Errorf("%s: revision %s, want %s", name, got, want)
		}
	}
	// Relative paths from two working directories.
	t.Run("cwd", func(t *testing.T) {
		t.Chdir(root)
		if got := load(t, func() ([]File, error) { return ReadPath(filepath.Join("deploy", "policy")) }); got != want {
			t.Errorf("relative from %s: revision %s, want %s", root, got, want)
		}
		t.Chdir(dir)
		if got := load(t, func() ([]File, error) { return ReadPath(".") }); got != want {
			t.Errorf("relative from the policy directory: revision %s, want %s", got, want)
		}
	})

	// One file through two paths.
	file := filepath.Join(dir, "acme.yaml")
	one := load(t, func() ([]File, error) { return ReadPath(file) })
	if got := load(t, func() ([]File, error) { return ReadPath(filepath.Join(link, "acme.yaml")) }); got != one {
		t.Errorf("one file through a link: revision %s, want %s", got, one)
	}

	// A file it refers to, changed: a new revision. So is the same content under another name.
	schema := filepath.Join(dir, "helpdesk.openapi.json") // the helpdesk host's OpenAPI document
	data, err := os.ReadFile(schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(schema, append(data, ' '), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := load(t, func() ([]File, error) { return ReadPath(dir) }); got == want {
		t.Error("revision did not change when a schema the policy refers to changed")
	}
	if err := os.WriteFile(schema, data, 0o644); err != nil {
		t.Fatal(err)
	}
	renamed := []File{{Name: "other.yaml"}}
	files, err := ReadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if filepath.Base(f.Name) == "acme.yaml" {
			renamed[0] = f
			renamed[0].Name = filepath.Join(filepath.Dir(f.Name), "other.yaml")
		}
	}
	if got := load(t, func() ([]File, error) { return renamed, nil }); got == want {
		t.Error("revision did not change when the policy file was renamed")
	}
}
