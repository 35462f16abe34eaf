package release_test

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"debug/macho"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"text/template"

	"go.yaml.in/yaml/v3"
)

// config is .goreleaser.yaml as far as this package checks it. The builds and the container
// image are decoded strictly: a key the test does not know fails it, so that it never builds
// something other than what the configuration says. The other sections are `goreleaser
// check`'s to validate (CI runs it).
type config struct {
	Version     int        `yaml:"version"`
	ProjectName string     `yaml:"project_name"`
	Builds      []build    `yaml:"builds"`
	DockersV2   []dockerV2 `yaml:"dockers_v2"`
	Archives    yaml.Node  `yaml:"archives"`
	Checksum    yaml.Node  `yaml:"checksum"`
	SBOMs       yaml.Node  `yaml:"sboms"`
	Snapshot    yaml.Node  `yaml:"snapshot"`
	Changelog   yaml.Node  `yaml:"changelog"`
	Release     yaml.Node  `yaml:"release"`
}

// build is one entry of builds, in GoReleaser's names. GoReleaser runs, for each target,
// GOOS, GOARCH and the instruction-set level set from the target and Env added to the
// environment:
//
//	go build FLAGS... -ldflags="LDFLAGS joined by spaces" -o DIST/BINARY MAIN
type build struct {
	ID           string   `yaml:"id"`
	Main         string   `yaml:"main"`
	Binary       string   `yaml:"binary"`
	Env          []string `yaml:"env"`
	Targets      []string `yaml:"targets"`
	Flags        []string `yaml:"flags"`
	Ldflags      []string `yaml:"ldflags"`
	ModTimestamp string   `yaml:"mod_timestamp"` // the files' time, not their bytes
}

type dockerV2 struct {
	ID         string            `yaml:"id"`
	IDs        []string          `yaml:"ids"`
	Dockerfile string            `yaml:"dockerfile"`
	Images     []string          `yaml:"images"`
	Tags       []string          `yaml:"tags"`
	Platforms  []string          `yaml:"platforms"`
	Labels     map[string]string `yaml:"labels"`
	SBOM       string            `yaml:"sbom"`
}

// repoRoot is the repository's root directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

func loadConfig(t *testing.T) config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), ".goreleaser.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c config
	if err := dec.Decode(&c); err != nil {
		t.Fatalf(".goreleaser.yaml: %v (a build or image setting this test does not know: teach it, so that CI builds exactly what a release does)", err)
	}
	return c
}

// The platforms a release must build.
var wantTargets = []string{"linux_amd64_v1", "linux_arm64_v8.0", "darwin_arm64_v8.0"}

// target is a GoReleaser Go target, GOOS_GOARCH_LEVEL.
type target struct{ goos, goarch, level string }

func parseTarget(t *testing.T, s string) target {
	t.Helper()
	parts := strings.Split(s, "_")
	if len(parts) != 3 {
		t.Fatalf("target %q is not GOOS_GOARCH_LEVEL", s)
	}
	return target{parts[0], parts[1], parts[2]}
}

// env is the environment GoReleaser sets for the target, as it sets it (empty values too).
func (tg target) env() []string {
	env := map[string]string{"GOAMD64": "", "GO386": "", "GOARM": "", "GOARM64": "", "GOMIPS": "", "GOMIPS64": "", "GOPPC64": "", "GORISCV64": ""}
	switch tg.goarch {
	case "amd64":
		env["GOAMD64"] = tg.level
	case "arm64":
		env["GOARM64"] = tg.level
	}
	out := []string{"GOOS=" + tg.goos, "GOARCH=" + tg.goarch}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range env {
			if !yield(k) {
				return
			}
		}
	}) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// Values the test's "release" is stamped with.
const (
	testVersion = "0.0.0-citest"
	testCommit  = "0123456789abcdef0123456789abcdef01234567"
)

// render applies GoReleaser's template fields that the builds use; any other field, or a
// template function, is an error here rather than a silent difference.
func render(t *testing.T, s string) string {
	t.Helper()
	tpl, err := template.New("").Option("missingkey=error").Parse(s)
	if err != nil {
		t.Fatalf("template %q: %v", s, err)
	}
	var b strings.Builder
	if err := tpl.Execute(&b, map[string]any{
		"Version": testVersion, "FullCommit": testCommit, "CommitTimestamp": "1767225600", "ProjectName": "agentauthz",
	}); err != nil {
		t.Fatalf("template %q: %v", s, err)
	}
	return b.String()
}

// TestGoReleaserConfig: the release builds one static binary of cmd/agentauthz for exactly the
// three platforms, trimmed and stamped, and its image uses Containerfile and the linux builds.
func TestGoReleaserConfig(t *testing.T) {
	c := loadConfig(t)
	if c.Version != 2 || c.ProjectName != "agentauthz" {
		t.Errorf("version %d, project_name %q; want 2, agentauthz", c.Version, c.ProjectName)
	}
	if len(c.Builds) != 1 {
		t.Fatalf("%d builds, want one", len(c.Builds))
	}
	b := c.Builds[0]
	if b.Main != "./cmd/agentauthz" || b.Binary != "agentauthz" {
		t.Errorf("builds %q as %q, want ./cmd/agentauthz as agentauthz", b.Main, b.Binary)
	}
	if !slices.Equal(slices.Sorted(slices.Values(b.Targets)), slices.Sorted(slices.Values(wantTargets))) {
		t.Errorf("targets %v, want %v", b.Targets, wantTargets)
	}
	if !slices.Contains(b.Env, "CGO_ENABLED=0") {
		t.Errorf("env %v: the binaries must be static (CGO_ENABLED=0)", b.Env)
	}
	if !slices.Contains(b.Flags, "-trimpath") {
		t.Errorf("flags %v: -trimpath keeps build paths out of the binaries", b.Flags)
	}
	ldflags := render(t, strings.Join(b.Ldflags, " "))
	for _, x := range []string{
		"-X github.com/agentauthz/agentauthz/internal/version.releaseVersion=v" + testVersion,
		"-X github.com/agentauthz/agentauthz/internal/version.releaseCommit=" + testCommit,
	} {
		if !strings.Contains(ldflags, x) {
			t.Errorf("ldflags %q do not stamp %q", ldflags, x)
		}
	}

	if len(c.DockersV2) != 1 {
		t.Fatalf("%d images, want one", len(c.DockersV2))
	}
	d := c.DockersV2[0]
	if d.Dockerfile != "Containerfile" || !slices.Equal(d.IDs, []string{b.ID}) {
		t.Errorf("image from %q with builds %v, want Containerfile with %q", d.Dockerfile, d.IDs, b.ID)
	}
	for _, p := range d.Platforms {
		goos, goarch, _ := strings.Cut(p, "/")
		if !slices.ContainsFunc(b.Targets, func(s string) bool { return strings.HasPrefix(s, goos+"_"+goarch+"_") }) {
			t.Errorf("image platform %s is not built", p)
		}
	}
	if len(d.Platforms) != 2 {
		t.Errorf("image platforms %v, want linux/amd64 and linux/arm64", d.Platforms)
	}
	for _, l := range []string{"org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.created"} {
		if d.Labels[l] == "" {
			t.Errorf("the image has no %s label", l)
		}
	}
}

// TestGoReleaserBuilds builds the release's binaries with `go build`, exactly as
// .goreleaser.yaml says, cross-compiled, and inspects each: the platform asked for, static on
// Linux (no interpreter, no shared library), its build settings recorded, no path of this
// machine inside; the one this machine runs prints the stamped version.
func TestGoReleaserBuilds(t *testing.T) {
	// Cross-compiling every dependency for two more platforms takes minutes on a cold build
	// cache: CI runs it, and anyone may.
	if os.Getenv("CI") == "" && os.Getenv("AGENTAUTHZ_RELEASE_BUILDS") == "" {
		t.Skip("builds the release's three binaries, minutes on a cold build cache: set AGENTAUTHZ_RELEASE_BUILDS=1 (CI runs it)")
	}
	c := loadConfig(t)
	root := repoRoot(t)
	b := c.Builds[0]
	var env []string
	for _, e := range b.Env {
		env = append(env, render(t, e))
	}
	ldflags := make([]string, 0, len(b.Ldflags))
	for _, l := range b.Ldflags {
		ldflags = append(ldflags, render(t, l))
	}
	dist := t.TempDir()
	for _, s := range b.Targets {
		t.Run(s, func(t *testing.T) {
			tg := parseTarget(t, s)
			out := filepath.Join(dist, s, b.Binary)
			args := []string{"build"}
			for _, f := range b.Flags {
				args = append(args, render(t, f))
			}
			args = append(args, "-ldflags="+strings.Join(ldflags, " "), "-o", out, b.Main)
			cmd := exec.Command("go", args...)
			cmd.Dir = root
			cmd.Env = append(append(os.Environ(), env...), tg.env()...)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go %s (%v): %v\n%s", strings.Join(args, " "), tg.env(), err, msg)
			}
			checkBuildInfo(t, out, tg)
			checkFormat(t, out, tg)
			checkStampAndPaths(t, out, root)
			if tg.goos == runtime.GOOS && tg.goarch == runtime.GOARCH {
				v, err := exec.Command(out, "version").Output()
				want := fmt.Sprintf("agentauthz v%s (commit %s", testVersion, testCommit)
				if err != nil || !strings.HasPrefix(string(v), want) || !strings.Contains(string(v), "built with "+runtime.Version()) {
					t.Errorf("agentauthz version = %q, %v; want it to start %q", v, err, want)
				}
			}
		})
	}
}

func checkBuildInfo(t *testing.T, path string, tg target) {
	t.Helper()
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("build information: %v", err)
	}
	if bi.Path != "github.com/agentauthz/agentauthz/cmd/agentauthz" {
		t.Errorf("main package %q", bi.Path)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	// With -trimpath the toolchain leaves -ldflags out of the build information (they may hold
	// paths): the stamp is looked for in the binary's bytes instead (checkStamp).
	want := map[string]string{"CGO_ENABLED": "0", "GOOS": tg.goos, "GOARCH": tg.goarch, "-trimpath": "true"}
	switch tg.goarch {
	case "amd64":
		want["GOAMD64"] = tg.level
	case "arm64":
		want["GOARM64"] = tg.level
	}
	for k, v := range want {
		if settings[k] != v {
			t.Errorf("build setting %s = %q, want %q", k, settings[k], v)
		}
	}
}

func checkFormat(t *testing.T, path string, tg target) {
	t.Helper()
	switch tg.goos {
	case "linux":
		f, err := elf.Open(path)
		if err != nil {
			t.Fatalf("not ELF: %v", err)
		}
		defer f.Close()
		machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[tg.goarch]
		if f.Machine != machine {
			t.Errorf("ELF machine %v, want %v", f.Machine, machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("not static: program header %v", p.Type)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) != 0 {
			t.Errorf("not static: needs %v", libs)
		}
	case "darwin":
		// macOS has no static binaries: every program links libSystem, and Go's does too, even
		// without cgo. CGO_ENABLED=0 (checked in the build settings) is what can be asked.
		f, err := macho.Open(path)
		if err != nil {
			t.Fatalf("not Mach-O: %v", err)
		}
		defer f.Close()
		if tg.goarch != "arm64" || f.Cpu != macho.CpuArm64 {
			t.Errorf("Mach-O CPU %v, want arm64", f.Cpu)
		}
	default:
		t.Fatalf("no check for %s", tg.goos)
	}
}

// checkStampAndPaths: the binary holds the stamped version and commit (the -X flags named a
// variable that exists), and -trimpath left no directory of this machine in it.
func checkStampAndPaths(t *testing.T, path, root string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"v" + testVersion, testCommit} {
		if !bytes.Contains(data, []byte(s)) {
			t.Errorf("the binary does not hold the stamped %q", s)
		}
	}
	dirs := []string{root}
	for _, v := range []string{"GOMODCACHE", "GOROOT"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	for _, d := range dirs {
		if d != "" && bytes.Contains(data, []byte(d+string(filepath.Separator))) {
			t.Errorf("the binary holds the build machine's path %s", d)
		}
	}
}
