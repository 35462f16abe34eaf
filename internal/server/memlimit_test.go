package server

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]MemoryLimit{
		"auto":      {Auto: true},
		"off":       {},
		"0":         {},
		"48MiB":     {Bytes: 48 << 20},
		"1GiB":      {Bytes: 1 << 30},
		"16384KiB":  {Bytes: 16 << 20},
		"16777216B": {Bytes: 16 << 20},
		"2TiB":      {Bytes: 2 << 40},
		"0048MiB":   {Bytes: 48 << 20},
	} {
		got, err := ParseMemoryLimit(in)
		if err != nil || got != want {
			t.Errorf("ParseMemoryLimit(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if err == nil {
			again, err := ParseMemoryLimit(got.String())
			if err != nil || again != got {
				t.Errorf("ParseMemoryLimit(%q).String() = %q reads back as %+v, %v", in, got.String(), again, err)
			}
		}
	}
	for _, in := range []string{
		"", "48", "48MB", "48mib", "48 MiB", " 48MiB", "-48MiB", "+48MiB", "4.5GiB", "MiB", "1e9B",
		"15MiB", "1B", "9999999999999999999TiB", "8388608TiB", "Auto", "none", "٤٨MiB",
	} {
		if got, err := ParseMemoryLimit(in); err == nil || !strings.HasPrefix(err.Error(), "server: ") {
			t.Errorf("ParseMemoryLimit(%q) = %+v, %v; want an error", in, got, err)
		}
	}
}

// FuzzParseMemoryLimit: whatever the input, a limit is auto, none, or at least 16 MiB and
// exactly what its digits and unit say; anything else is an error, never a panic.
func FuzzParseMemoryLimit(f *testing.F) {
	for _, s := range []string{"auto", "off", "0", "48MiB", "1GiB", "16777216B", "48", "48MB", "15MiB", "8388608TiB", "٤٨MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseMemoryLimit(s)
		if err != nil {
			if l != (MemoryLimit{}) {
				t.Errorf("ParseMemoryLimit(%q) = %+v with error %v", s, l, err)
			}
			return
		}
		switch {
		case l.Auto:
			if s != "auto" || l.Bytes != 0 {
				t.Errorf("ParseMemoryLimit(%q) = %+v", s, l)
			}
			return
		case l.Bytes == 0:
			if s != "off" && s != "0" {
				t.Errorf("ParseMemoryLimit(%q) = no limit", s)
			}
			return
		}
		if l.Bytes < minMemoryLimit {
			t.Errorf("ParseMemoryLimit(%q) = %d bytes, below the minimum", s, l.Bytes)
		}
		for _, u := range memoryUnits {
			if digits, ok := strings.CutSuffix(s, u.suffix); ok {
				n, perr := strconv.ParseUint(digits, 10, 64)
				if perr != nil || strings.TrimLeft(digits, "0123456789") != "" || int64(n<<u.shift) != l.Bytes || n > math.MaxInt64>>u.shift {
					t.Errorf("ParseMemoryLimit(%q) = %d bytes, but the input reads as %d × 2^%d (%v)", s, l.Bytes, n, u.shift, perr)
				}
				return
			}
		}
		t.Errorf("ParseMemoryLimit(%q) = %+v without a unit", s, l)
	})
}

// TestSetMemoryLimit: a flag's limit is set as given; auto takes GOMEMLIMIT, else a share of
// the cgroup's limit (v2 or v1 file), else none.
func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v2limit := file("memory.max", "268435456\n")
	v2none := file("memory.max.none", "max\n")
	v1limit := file("memory.limit_in_bytes", "134217728\n")
	v1none := file("memory.limit_in_bytes.none", "9223372036854771712\n")
	tiny := file("memory.max.tiny", "1048576\n")
	missing := filepath.Join(dir, "missing")
	auto := MemoryLimit{Auto: true}
	for _, tc := range []struct {
		name      string
		limit     MemoryLimit
		env       string
		files     []string
		want      int64
		wantFrom  string
		wantLimit int64 // what the runtime then holds; math.MaxInt64 for none
	}{
		{"flag", MemoryLimit{Bytes: 48 << 20}, "", []string{v2limit}, 48 << 20, "flag", 48 << 20},
		{"off", MemoryLimit{}, "", []string{v2limit}, 0, "none", math.MaxInt64},
		{"cgroup v2", auto, "", []string{v2limit, v1limit}, 256 << 20 * 8 / 10, "cgroup", 256 << 20 * 8 / 10},
		{"cgroup v1", auto, "", []string{missing, v1limit}, 128 << 20 * 8 / 10, "cgroup", 128 << 20 * 8 / 10},
		{"cgroup v2 without a limit", auto, "", []string{v2none, v1limit}, 0, "none", math.MaxInt64},
		{"cgroup v1 without a limit", auto, "", []string{missing, v1none}, 0, "none", math.MaxInt64},
		{"a tiny cgroup", auto, "", []string{tiny}, minMemoryLimit, "cgroup", minMemoryLimit},
		{"no cgroup", auto, "", []string{missing}, 0, "none", math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			got, from := setMemoryLimit(tc.limit, tc.env, tc.files)
			if got != tc.want || from != tc.wantFrom {
				t.Errorf("setMemoryLimit = %d, %q; want %d, %q", got, from, tc.want, tc.wantFrom)
			}
			if l := debug.SetMemoryLimit(-1); l != tc.wantLimit {
				t.Errorf("the runtime's limit is %d; want %d", l, tc.wantLimit)
			}
		})
	}
	t.Run("GOMEMLIMIT", func(t *testing.T) {
		// The runtime reads GOMEMLIMIT at start; auto leaves what it set, over the cgroup's.
		debug.SetMemoryLimit(40 << 20)
		if got, from := setMemoryLimit(auto, "40MiB", []string{v2limit}); got != 40<<20 || from != "GOMEMLIMIT" {
			t.Errorf("setMemoryLimit = %d, %q; want %d from GOMEMLIMIT", got, from, 40<<20)
		}
		debug.SetMemoryLimit(math.MaxInt64)
		if got, from := setMemoryLimit(auto, "off", []string{v2limit}); got != 0 || from != "GOMEMLIMIT" {
			t.Errorf("setMemoryLimit with GOMEMLIMIT=off = %d, %q; want none from GOMEMLIMIT", got, from)
		}
		if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
			t.Errorf("the runtime's limit is %d; want none", l)
		}
	})
}
