package reload_test

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/internal/reload"
)

// configMapVolume is a directory laid out as the kubelet lays out a ConfigMap volume, and
// updated as it updates one: every version of the files is written into a new hidden,
// timestamped directory; the symbolic link ..data names the version in force and is replaced
// in one rename; each key is a symbolic link KEY -> ..data/KEY that never changes. A policy
// mounted this way is never rewritten in place: only ..data moves.
type configMapVolume struct {
	t   *testing.T
	dir string
	n   int
}

func newConfigMapVolume(t *testing.T, files map[string]string) *configMapVolume {
	t.Helper()
	v := &configMapVolume{t: t, dir: filepath.Join(t.TempDir(), "policy")}
	if err := os.Mkdir(v.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v.update(files)
	return v
}

// update puts files in force in the kubelet's order: write the new version beside the old,
// point ..data_tmp at it, rename ..data_tmp over ..data, add links for new keys, remove the
// old version, then remove links of keys that are gone.
func (v *configMapVolume) update(files map[string]string) {
	t := v.t
	t.Helper()
	data := filepath.Join(v.dir, "..data")
	old, err := os.Readlink(data)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	v.n++
	version := fmt.Sprintf("%s%09d", time.Now().UTC().Format("..2006_01_02_15_04_05."), v.n)
	if err := os.Mkdir(filepath.Join(v.dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(v.dir, version, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, data); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(v.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(v.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, kept := files[e.Name()]; !kept && e.Type()&fs.ModeSymlink != 0 && e.Name() != "..data" {
			if err := os.Remove(filepath.Join(v.dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// demoFiles is the demo policy's files by name, as a ConfigMap holds them.
func demoFiles(t *testing.T) map[string]string {
	t.Helper()
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "reload-test-token")
	entries, err := fs.ReadDir(demo.Files, demo.Dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		b, err := fs.ReadFile(demo.Files, path.Join(demo.Dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	if _, ok := files["acme.yaml"]; !ok {
		t.Fatal("the demo policy has no acme.yaml")
	}
	return files
}

func with(files map[string]string, name, content string) map[string]string {
	out := maps.Clone(files)
	out[name] = content
	return out
}

// TestConfigMapSwap: a policy mounted from a ConfigMap, as agentauthz serve --policy DIR reads
// it in Kubernetes, is reloaded when the kubelet swaps ..data: an edit is put in force, a
// broken version is refused and recorded while the last good policy keeps deciding, and the
// next good version is put in force again. With --policy naming one file of the volume (a
// link into ..data), the same.
func TestConfigMapSwap(t *testing.T) {
	for _, single := range []bool{false, true} {
		name := "directory"
		if single {
			name = "file"
		}
		t.Run(name, func(t *testing.T) {
			good := demoFiles(t)
			vol := newConfigMapVolume(t, good)
			policyPath := vol.dir
			if single {
				policyPath = filepath.Join(vol.dir, "acme.yaml")
			}
			store := mustLoad(t, policyPath)
			goodRev := store.Load().Revision()
			if allowed, _ := decide(t, store); !allowed {
				t.Fatal("the demo policy does not allow the helpdesk agent to read a ticket")
			}
			var loads atomic.Int64
			r := &reload.Reloader{Path: policyPath, Load: counting(&loads), Store: store, Debounce: 50 * time.Millisecond}
			watch(t, r, nil)
			waitWatching(t, vol.dir, &loads)

			// An edit: the helpdesk agent loses tickets:read.
			edited := with(good, "acme.yaml", withoutReadScope(t, good["acme.yaml"]))
			vol.update(edited)
			poll(t, "the swapped-in edit in force", func() bool {
				_, denied := decide(t, store)
				return denied
			})
			editedRev := store.Load().Revision()
			if editedRev == goodRev {
				t.Fatalf("the revision did not change: %s", editedRev)
			}
			if f := store.LastFailure(); f != nil {
				t.Fatalf("LastFailure after a good swap = %+v", f)
			}

			// A broken version: refused, recorded, and the edited policy keeps deciding.
			vol.update(with(edited, "acme.yaml", "agents: [\n"))
			poll(t, "the broken version refused", func() bool { return store.LastFailure() != nil })
			if f := store.LastFailure(); !mentions(f.Problems, "acme.yaml") {
				t.Errorf("LastFailure = %+v, want the problems of acme.yaml", f)
			}
			if got := store.Load().Revision(); got != editedRev {
				t.Errorf("after the broken swap, revision %s is in force, want the last good %s", got, editedRev)
			}
			if _, denied := decide(t, store); !denied {
				t.Error("after the broken swap, the last good policy no longer decides")
			}

			// The original again: in force, under the revision it had at the start (the same
			// files, read through the links, make the same revision).
			vol.update(good)
			poll(t, "the original in force again", func() bool {
				allowed, _ := decide(t, store)
				return allowed && store.LastFailure() == nil
			})
			if got := store.Load().Revision(); got != goodRev {
				t.Errorf("revision %s, want the original %s", got, goodRev)
			}
		})
	}
}
