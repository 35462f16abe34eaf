// Package childproc runs child processes that do not outlive their parent. Each runs in its own
// process group, which Stop signals as a whole; on Linux the kernel also kills it if the parent
// dies first (Pdeathsig), so a parent killed by SIGKILL or a test timeout leaves nothing behind.
// Its standard output and standard error go to a log file.
//
// The demo's local stack (cmd/demo-stack) and the SPIRE orchestration (internal/spire) run
// their processes with it.
package childproc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec says what to run.
type Spec struct {
	// Name names the process in errors.
	Name string
	// Path is the program; Args its arguments (without the program name).
	Path string
	Args []string
	// Env is added to the parent's environment.
	Env []string
	// Dir is the working directory; "" is the parent's.
	Dir string
	// Log is the file the process's standard output and standard error are appended to; ""
	// discards them.
	Log string
	// Output, when set, receives the process's output as well, as it comes.
	Output io.Writer
}

// Proc is a running (or exited) child process.
type Proc struct {
	spec Spec
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	stopOnce sync.Once
	stopErr  error
}

// Start starts the process.
func Start(s Spec) (*Proc, error) {
	if s.Name == "" {
		s.Name = filepath.Base(s.Path)
	}
	out, err := openLog(s.Log)
	if err != nil {
		return nil, fmt.Errorf("childproc: %s: %w", s.Name, err)
	}
	p := &Proc{spec: s, done: make(chan struct{})}
	p.cmd = exec.Command(s.Path, s.Args...)
	p.cmd.Dir = s.Dir
	p.cmd.Env = append(os.Environ(), s.Env...)
	p.cmd.Stdin = nil
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if s.Output != nil {
		// One writer for both, so that exec copies them through one pipe, in order.
		w := io.MultiWriter(out, s.Output)
		p.cmd.Stdout, p.cmd.Stderr = w, w
		// Wait returns even if something the process started keeps the pipe open.
		p.cmd.WaitDelay = 2 * time.Second
	}
	p.cmd.SysProcAttr = sysProcAttr()
	if err := startLocked(p.cmd); err != nil {
		out.Close()
		return nil, fmt.Errorf("childproc: start %s: %w", s.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait() // returns once the output is copied
		out.Close()
		close(p.done)
	}()
	return p, nil
}

func openLog(path string) (*os.File, error) {
	if path == "" {
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
}

// Name is the process's name.
func (p *Proc) Name() string { return p.spec.Name }

// PID is the process id, which is also its process group id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// LogPath is the file its output goes to ("" when discarded).
func (p *Proc) LogPath() string { return p.spec.Log }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how (nil for exit status 0).
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop ends the process and its group: SIGTERM, then SIGKILL if it has not exited within grace.
// It returns an error only if SIGKILL was needed. Stopping an exited process is a no-op;
// calling Stop again returns the first call's result.
func (p *Proc) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
		default:
			signalGroup(p.cmd.Process, syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(grace):
				signalGroup(p.cmd.Process, syscall.SIGKILL)
				<-p.done
				p.stopErr = fmt.Errorf("childproc: %s did not exit within %s of SIGTERM; killed", p.spec.Name, grace)
			}
		}
		// Whatever the leader left in its group goes with it.
		signalGroup(p.cmd.Process, syscall.SIGKILL)
	})
	return p.stopErr
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	if p.spec.Log == "" {
		return ""
	}
	data, err := os.ReadFile(p.spec.Log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// interpretersOf returns the programs that run path before it execs its real program: none for a
// binary; for a script, the interpreter of its #! line (and, for "#!/usr/bin/env NAME", both
// env and NAME as found on PATH), each with symbolic links resolved.
func interpretersOf(path string) (map[string]struct{}, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := f.Read(head)
	head = head[:n]
	out := map[string]struct{}{}
	if !bytes.HasPrefix(head, []byte("#!")) {
		return out, nil
	}
	line, _, _ := bytes.Cut(head[2:], []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) == 0 {
		return nil, errors.New("an empty #! line")
	}
	progs := []string{fields[0]}
	if filepath.Base(fields[0]) == "env" && len(fields) > 1 {
		if p, err := exec.LookPath(fields[1]); err == nil {
			progs = append(progs, p)
		}
	}
	for _, prog := range progs {
		if real, err := filepath.EvalSymlinks(prog); err == nil {
			prog = real
		}
		out[prog] = struct{}{}
	}
	return out, nil
}
