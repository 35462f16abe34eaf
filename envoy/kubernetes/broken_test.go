package kubernetes_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBrokenManifests: each file of testdata/broken has one defect, and the strict reading
// refuses it with the error its "# want:" line names. Without this, a reading that let
// everything through would pass every other test here.
func TestBrokenManifests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "broken", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no broken manifests: %v", err)
	}
	want := regexp.MustCompile(`(?m)^# want: (.+)$`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m := want.FindSubmatch(data)
			if m == nil {
				t.Fatal("no # want: line")
			}
			if strings.HasPrefix(filepath.Base(f), "mesh-config-") {
				_, err = decodeMeshConfig(data)
			} else {
				_, err = decodeObjects(data)
			}
			if err == nil || !strings.Contains(err.Error(), string(m[1])) {
				t.Errorf("decoding = %v, want an error containing %q", err, m[1])
			}
		})
	}
}
