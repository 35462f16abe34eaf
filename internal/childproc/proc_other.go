//go:build unix && !linux

package childproc

import (
	"errors"
	"os/exec"
	"syscall"
)

// sysProcAttr puts the child in its own process group. Without Pdeathsig, a parent that dies
// without running Stop leaves its children running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func startLocked(cmd *exec.Cmd) error { return cmd.Start() }

func executableOf(int) (string, error) {
	return "", errors.New("finding a process's executable needs Linux's /proc")
}
