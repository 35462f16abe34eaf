package server

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// MemoryLimit is serve's --memory-limit: a soft limit on the memory the Go runtime holds
// (debug.SetMemoryLimit). Near it the garbage collector collects sooner than DefaultGCPercent
// would, so the heap's growth between collections, most of what serve holds above its live
// heap, stays under the limit; far from it, nothing changes. It is soft: when the live heap
// itself approaches it, the runtime gives up on it rather than spend more than about half the
// CPU collecting, so too low a limit costs CPU, never a failed check.
type MemoryLimit struct {
	// Auto takes the limit from GOMEMLIMIT when it is set, else from the memory limit of the
	// process's cgroup (AutoMemoryFraction of it), else sets none.
	Auto bool
	// Bytes is the limit when not Auto; 0 sets none.
	Bytes int64
}

// AutoMemoryFraction is the share of a cgroup's memory limit an automatic MemoryLimit takes: the
// rest is for what the Go runtime does not count (the program's own pages, which the kernel
// charges to the cgroup too) and for slack.
const AutoMemoryFraction = 0.8

// String is the flag's form of l.
func (l MemoryLimit) String() string {
	switch {
	case l.Auto:
		return "auto"
	case l.Bytes == 0:
		return "off"
	case l.Bytes%(1<<30) == 0:
		return strconv.FormatInt(l.Bytes>>30, 10) + "GiB"
	case l.Bytes%(1<<20) == 0:
		return strconv.FormatInt(l.Bytes>>20, 10) + "MiB"
	}
	return strconv.FormatInt(l.Bytes, 10) + "B"
}

// Set reads a flag value: "auto", "off", or a size as GOMEMLIMIT spells it, digits and a unit
// of B, KiB, MiB, GiB or TiB ("48MiB"). A bare number or a decimal unit (MB) is refused: which
// one was meant is ambiguous.
func (l *MemoryLimit) Set(s string) error {
	v, err := ParseMemoryLimit(s)
	if err != nil {
		// The flag package names the flag and the value before this message.
		return errors.New(strings.TrimPrefix(err.Error(), "server: "))
	}
	*l = v
	return nil
}

var memoryUnits = []struct {
	suffix string
	shift  uint
}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}, {"B", 0}}

// minMemoryLimit is the smallest limit accepted: below it serve would collect without pause.
const minMemoryLimit = 16 << 20

// ParseMemoryLimit reads a --memory-limit value (MemoryLimit.Set).
func ParseMemoryLimit(s string) (MemoryLimit, error) {
	switch s {
	case "auto":
		return MemoryLimit{Auto: true}, nil
	case "off", "0":
		return MemoryLimit{}, nil
	}
	for _, u := range memoryUnits {
		digits, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
			break
		}
		n, err := strconv.ParseUint(digits, 10, 64)
		if err != nil || n > math.MaxInt64>>u.shift {
			return MemoryLimit{}, fmt.Errorf("server: memory limit %q is too large", s)
		}
		b := int64(n << u.shift)
		if b < minMemoryLimit {
			return MemoryLimit{}, fmt.Errorf("server: memory limit %q is below 16MiB; use off for none", s)
		}
		return MemoryLimit{Bytes: b}, nil
	}
	return MemoryLimit{}, fmt.Errorf("server: memory limit %q is not auto, off or a size such as 48MiB (units B, KiB, MiB, GiB, TiB)", s)
}

// cgroupFiles are where a process reads its cgroup's memory limit, cgroup v2 first; inside a
// container the cgroup namespace makes them the container's own.
var cgroupFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// cgroupMemoryLimit is the memory limit of the process's cgroup, or 0 without one. cgroup v1
// says "no limit" with a huge number, v2 with "max".
func cgroupMemoryLimit(files []string) int64 {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0
		}
		return n
	}
	return 0
}

// SetMemoryLimit applies l and returns the limit now in force (0 for none) and where it came
// from: "flag", "GOMEMLIMIT", "cgroup" or "none".
func SetMemoryLimit(l MemoryLimit) (int64, string) {
	return setMemoryLimit(l, os.Getenv("GOMEMLIMIT"), cgroupFiles)
}

func setMemoryLimit(l MemoryLimit, env string, files []string) (int64, string) {
	if !l.Auto {
		if l.Bytes == 0 {
			debug.SetMemoryLimit(math.MaxInt64)
			return 0, "none"
		}
		debug.SetMemoryLimit(l.Bytes)
		return l.Bytes, "flag"
	}
	if env != "" {
		// The runtime read it at start (and refused to start on a malformed one).
		if cur := debug.SetMemoryLimit(-1); cur != math.MaxInt64 {
			return cur, "GOMEMLIMIT"
		}
		return 0, "GOMEMLIMIT"
	}
	if c := cgroupMemoryLimit(files); c > 0 {
		limit := max(int64(float64(c)*AutoMemoryFraction), minMemoryLimit)
		debug.SetMemoryLimit(limit)
		return limit, "cgroup"
	}
	return 0, "none"
}
