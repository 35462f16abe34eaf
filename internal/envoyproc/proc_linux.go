package envoyproc

import "syscall"

// sysProcAttr puts Envoy in its own process group, and has the kernel kill it if the test
// binary dies first (a test timeout's panic runs no cleanups).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
