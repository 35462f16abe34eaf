package envoyproc

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Render returns src with each key of replacements replaced by its value. Keys are exact
// strings; every occurrence is replaced, in one pass, so a value is never itself rewritten, and
// where keys overlap the longer one wins. A key that does not occur in src is an error: the
// shipped configuration changed, and the test would run it with something it meant to rewrite
// left as it was. To rewrite one of several equal lines, make the key longer (the lines around
// it included).
//
// Tests rewrite only addresses, ports and file paths this way: what runs is otherwise the file
// that ships.
func Render(src []byte, replacements map[string]string) ([]byte, error) {
	keys := make([]string, 0, len(replacements))
	var missing []string
	for k := range replacements {
		if k == "" {
			return nil, fmt.Errorf("envoyproc: render: an empty string to replace")
		}
		if !strings.Contains(string(src), k) {
			missing = append(missing, fmt.Sprintf("%q", k))
		}
		keys = append(keys, k)
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("envoyproc: render: not in the configuration: %s", strings.Join(missing, ", "))
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b))
	})
	pairs := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		pairs = append(pairs, k, replacements[k])
	}
	return []byte(strings.NewReplacer(pairs...).Replace(string(src))), nil
}

// RenderFile renders the configuration at path (see Render) into a file of the same name in a
// new temporary directory of t, and returns that file's path. It fails the test on any error.
func RenderFile(t testing.TB, path string, replacements map[string]string) string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("envoyproc: %v", err)
	}
	out, err := Render(src, replacements)
	if err != nil {
		t.Fatalf("%v (in %s)", err, path)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(dst, out, 0o600); err != nil {
		t.Fatalf("envoyproc: %v", err)
	}
	return dst
}
