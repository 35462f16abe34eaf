//go:build unix && !linux

package childproc

import (
	"os/exec"
	"path/filepath"
	"syscall"
)

// sysProcAttr puts the child in its own process group. Without Pdeathsig, a parent that dies
// without running Stop leaves its children running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func startLocked(cmd *exec.Cmd) error { return cmd.Start() }

// ProgramBehind is launcher itself here: seeing what a script execs needs Linux's /proc.
func ProgramBehind(launcher string, _ ...string) (string, error) {
	if _, err := interpretersOf(launcher); err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(launcher)
}
