//go:build unix

package childproc

import (
	"os"
	"syscall"
)

// signalGroup signals the process group whose leader is p, or p alone if that fails.
func signalGroup(p *os.Process, sig syscall.Signal) {
	if err := syscall.Kill(-p.Pid, sig); err != nil {
		_ = p.Signal(sig)
	}
}
