package childproc

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
)

// sysProcAttr puts the child in its own process group and has the kernel kill it when the
// thread that started it exits: startLocked starts every child from one OS thread that never
// exits while the parent runs.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// starter is the one OS thread children are started from. Pdeathsig fires when the parent
// *thread* exits, not the process (golang.org/issue/27505), and Go retires the thread of a
// goroutine that exits while locked to it; this thread is locked and its goroutine never exits.
var starter struct {
	once sync.Once
	reqs chan startReq
}

type startReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startLocked(cmd *exec.Cmd) error {
	starter.once.Do(func() {
		starter.reqs = make(chan startReq)
		go func() {
			runtime.LockOSThread() // never unlocked
			for r := range starter.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := startReq{cmd: cmd, done: make(chan error, 1)}
	starter.reqs <- r
	return <-r.done
}

// executableOf is the program process pid runs, from /proc.
func executableOf(pid int) (string, error) {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return "", fmt.Errorf("the executable of process %d: %w", pid, err)
	}
	return exe, nil
}
