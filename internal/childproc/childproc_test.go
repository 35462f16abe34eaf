//go:build linux

package childproc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopEndsTheGroup: Stop ends the process and what it started, which shares its group.
func TestStopEndsTheGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	p, err := Start(Spec{Name: "sh", Path: "/bin/sh", Log: filepath.Join(dir, "log"),
		Args: []string{"-c", "sleep 60 & echo $! > " + pidFile + "; wait"}})
	if err != nil {
		t.Fatal(err)
	}
	var child int
	for child == 0 {
		b, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if done, _ := p.Exited(); !done {
		t.Fatal("the process is still running after Stop")
	}
	// The orphaned sleep goes to init, which may be slow to reap it (or never: a zombie is gone).
	for range 100 {
		if err := syscall.Kill(child, 0); errors.Is(err, syscall.ESRCH) || zombie(child) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("the grandchild %d outlived Stop", child)
}

// TestStopKillsWhatIgnoresSIGTERM: SIGKILL follows after the grace period, and Stop says so.
func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	p, err := Start(Spec{Path: "/bin/sh", Args: []string{"-c", "trap '' TERM; touch " + ready + "; sleep 60 & wait; wait"}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Stop(200 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop = %v, want an error saying it killed the process", err)
	}
	if err := p.Stop(time.Second); err == nil {
		t.Error("a second Stop forgot the first one's result")
	}
}

// TestProgramBehind: a launcher script is known by the program it execs, however briefly that
// runs; a binary by itself.
func TestProgramBehind(t *testing.T) {
	echo, err := exec.LookPath("echo")
	if err != nil {
		t.Skip("the echo program is not on PATH; a launcher needs a program to exec")
	}
	if echo, err = filepath.EvalSymlinks(echo); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "launcher")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec "+echo+" \"$@\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	for range 20 { // echo exits at once unless it is held
		if got, err := ProgramBehind(script, "hello"); err != nil || got != echo {
			t.Fatalf("ProgramBehind(script) = %q, %v; want %s", got, err, echo)
		}
	}
	if got, err := ProgramBehind(echo); err != nil || got != echo {
		t.Errorf("ProgramBehind(echo) = %q, %v; want %s", got, err, echo)
	}
}

// TestOutput: the output goes to the log file and, as it comes, to Output.
func TestOutput(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	var out strings.Builder
	p, err := Start(Spec{Path: "/bin/sh", Args: []string{"-c", "echo out; echo err >&2"}, Log: log, Output: &out})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if done, err := p.Exited(); !done || err != nil {
		t.Fatalf("Exited() = %v, %v", done, err)
	}
	b, _ := os.ReadFile(log)
	if string(b) != "out\nerr\n" || out.String() != "out\nerr\n" {
		t.Errorf("log %q, output %q; want both out and err", b, out.String())
	}
	if got := p.Tail(1); got != "err" {
		t.Errorf("Tail(1) = %q", got)
	}
}

// zombie reports whether process pid has exited but not been reaped.
func zombie(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
