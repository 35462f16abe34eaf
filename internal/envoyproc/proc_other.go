//go:build unix && !linux

package envoyproc

import "syscall"

// sysProcAttr puts Envoy in its own process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
