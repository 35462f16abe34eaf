//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package audit

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive, non-blocking flock on f, released when f is closed. flock locks
// belong to the open file, so a second Open of the same file fails, in this process or another.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
