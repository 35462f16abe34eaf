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

// TestExecutable: a script that execs another program is known by that program.
func TestExecutable(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	if sleep, err = filepath.EvalSymlinks(sleep); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "launcher")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nsleep 0.2\nexec sleep 30\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	p, err := Start(Spec{Path: script})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	got, err := p.Executable(10 * time.Second)
	if err != nil || got != sleep {
		t.Errorf("Executable() = %q, %v; want %s", got, err, sleep)
	}

	// A binary is itself.
	q, err := Start(Spec{Path: sleep, Args: []string{"30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Stop(time.Second)
	if got, err := q.Executable(time.Second); err != nil || got != sleep {
		t.Errorf("Executable() = %q, %v; want %s", got, err, sleep)
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
