package kubernetes_test

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/agentauthz/agentauthz/internal/demo"
)

// The release the tests install: name and namespace as the Istio and Envoy Gateway manifests
// expect them.
const (
	releaseName      = "agentauthz"
	releaseNamespace = "agentauthz"
	// testImage stands in for where a user pushed the release's image.
	testImage = "registry.example/agentauthz/agentauthz"
)

// render renders the chart as `helm install` would, with values (YAML) over its defaults:
// values.schema.json validated, every template in strict mode (a reference to a value that does
// not exist is an error). It returns the rendered manifests by template name, without the
// helpers.
func render(t *testing.T, values string) (map[string]string, error) {
	t.Helper()
	chrt, err := loader.LoadDir("chart")
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = chartutil.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}
	rv, err := chartutil.ToRenderValues(chrt, vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: releaseNamespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	out, err := engine.Engine{Strict: true}.Render(chrt, rv)
	if err != nil {
		return nil, err
	}
	manifests := map[string]string{}
	for name, text := range out {
		if strings.HasSuffix(name, ".tpl") || strings.HasSuffix(name, "NOTES.txt") {
			continue
		}
		manifests[name] = text
	}
	return manifests, nil
}

// mustRender is render, failing the test on an error; it also decodes every object strictly.
func mustRender(t *testing.T, values string) []runtime.Object {
	t.Helper()
	manifests, err := render(t, values)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	var objs []runtime.Object
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range manifests {
			if !yield(k) {
				return
			}
		}
	}) {
		o, err := decodeObjects([]byte(manifests[name]))
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, manifests[name])
		}
		objs = append(objs, o...)
	}
	return objs
}

// demoPolicyValues is the demo policy's files as policy.files values.
func demoPolicyValues(t *testing.T) map[string]any {
	t.Helper()
	entries, err := fs.ReadDir(demo.Files, demo.Dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]any{}
	for _, e := range entries {
		b, err := fs.ReadFile(demo.Files, path.Join(demo.Dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	return files
}

// values is YAML for render: base (a values file of this directory, or none) with the test
// image, the demo policy and overrides merged in.
func values(t *testing.T, file string, overrides map[string]any) string {
	t.Helper()
	v := map[string]any{}
	if file != "" {
		b, err := os.ReadFile(filepath.FromSlash(file))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(b, &v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	b, err := yaml.Marshal(merge(v, map[string]any{
		"image":  map[string]any{"repository": testImage},
		"policy": map[string]any{"files": demoPolicyValues(t)},
	}, overrides))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
