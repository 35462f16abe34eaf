package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on every
// Linux system Go runs on.
const clockTicks = 100

// cpuTime is the CPU time a process has used so far (user and system), from /proc.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields are counted after its end.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14 of the file
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad CPU times", pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// memory is a process's resident set now and at its peak, and now its anonymous part (heap,
// stacks) and its file-backed part (the program's own pages, shared with other processes
// running it and reclaimable), from /proc/PID/status.
type memory struct{ RSS, Peak, Anon, File int64 } // bytes

func memoryOf(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	for line := range strings.Lines(string(b)) {
		name, value, _ := strings.Cut(line, ":")
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "VmRSS":
			m.RSS = kb << 10
		case "VmHWM":
			m.Peak = kb << 10
		case "RssAnon":
			m.Anon = kb << 10
		case "RssFile":
			m.File = kb << 10
		}
	}
	return m, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// loadAvg is /proc/loadavg's first three fields: the machine's load over 1, 5 and 15 minutes.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// runtimeStats is what agentauthz built with -tags pprof says of its CPU and heap
// (runtime/metrics), at AGENTAUTHZ_PPROF_ADDR.
type runtimeStats map[string]float64

func readRuntime(addr string) (runtimeStats, error) {
	resp, err := http.Get("http://" + addr + "/debug/runtime")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var s runtimeStats
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// gcShare is the garbage collector's share of the CPU the process used between two readings,
// and the heap allocations between them.
func gcShare(before, after runtimeStats) (share, allocs, bytes float64) {
	d := func(k string) float64 { return after[k] - before[k] }
	used := d("/cpu/classes/total:cpu-seconds") - d("/cpu/classes/idle:cpu-seconds")
	if used <= 0 {
		return 0, 0, 0
	}
	return d("/cpu/classes/gc/total:cpu-seconds") / used, d("/gc/heap/allocs:objects"), d("/gc/heap/allocs:bytes")
}

// fetchProfile saves a profile from the agentauthz at addr (path such as
// /debug/pprof/profile?seconds=5) into file.
func fetchProfile(addr, path, file string) error {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return err
	}
	return os.WriteFile(file, buf.Bytes(), 0o644)
}

// rssSampler records the largest resident set of a process while it runs: every 100ms
// from start until stop.
type rssSampler struct {
	max  atomic.Int64
	anon atomic.Int64 // the anonymous part of the largest sample
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := memoryOf(pid); err == nil && m.RSS > s.max.Load() {
				s.max.Store(m.RSS)
				s.anon.Store(m.Anon)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Max stops sampling and returns the largest resident set seen and its anonymous part, in
// bytes.
func (s *rssSampler) Max() (rss, anon int64) {
	close(s.stop)
	<-s.done
	return s.max.Load(), s.anon.Load()
}
