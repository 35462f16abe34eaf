package localstack

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/agentauthz/agentauthz/internal/childproc"
)

// programs are the demo's programs, each at the path SPIRE selects it by. The two agents are
// the one demo-agent program under two names: two paths, two identities.
type programs struct {
	agentauthz, helpdeskAPI, biAPI string
	helpdeskAgent, biAgent         string
}

// packages are the demo's commands, built into the working directory's bin.
var packages = []string{
	"github.com/agentauthz/agentauthz/cmd/agentauthz",
	"github.com/agentauthz/agentauthz/cmd/helpdesk-api",
	"github.com/agentauthz/agentauthz/cmd/bi-api",
	"github.com/agentauthz/agentauthz/cmd/demo-agent",
}

// programs builds the demo's commands into DIR/bin (or takes them from Config.BinDir) and
// copies demo-agent to helpdesk-agent and bi-agent.
func (s *stack) programs(ctx context.Context) (programs, error) {
	bin := s.path("bin")
	if err := os.MkdirAll(bin, 0o700); err != nil {
		return programs{}, fmt.Errorf("localstack: %w", err)
	}
	from := s.cfg.BinDir
	if from == "" {
		s.say("\n-- building agentauthz, helpdesk-api, bi-api and demo-agent (go build; build.log)\n")
		if err := s.build(ctx, bin); err != nil {
			return programs{}, err
		}
		from = bin
	} else {
		var err error
		if from, err = filepath.Abs(from); err != nil {
			return programs{}, fmt.Errorf("localstack: %w", err)
		}
		if from, err = filepath.EvalSymlinks(from); err != nil {
			return programs{}, fmt.Errorf("localstack: the programs' directory: %w", err)
		}
	}
	p := programs{
		agentauthz:    filepath.Join(from, "agentauthz"),
		helpdeskAPI:   filepath.Join(from, "helpdesk-api"),
		biAPI:         filepath.Join(from, "bi-api"),
		helpdeskAgent: filepath.Join(bin, "helpdesk-agent"),
		biAgent:       filepath.Join(bin, "bi-agent"),
	}
	for _, agent := range []string{p.helpdeskAgent, p.biAgent} {
		if err := copyFile(filepath.Join(from, "demo-agent"), agent); err != nil {
			return programs{}, err
		}
	}
	for _, prog := range []string{p.agentauthz, p.helpdeskAPI, p.biAPI} {
		if _, err := os.Stat(prog); err != nil {
			return programs{}, fmt.Errorf("localstack: %w", err)
		}
	}
	return p, nil
}

// build runs go build in its own process group, so that Ctrl-C stops it too.
func (s *stack) build(ctx context.Context, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("localstack: building the demo's programs needs the go command: %w", err)
	}
	args := append([]string{"build", "-o", out + string(filepath.Separator)}, packages...)
	p, err := childproc.Start(childproc.Spec{Name: "go build", Path: goBin, Args: args, Env: s.cfg.Env, Log: s.path("build.log")})
	if err != nil {
		return err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		_ = p.Stop(stopGrace)
		return ctx.Err()
	}
	if _, err := p.Exited(); err != nil {
		return fmt.Errorf("localstack: go build %v (run it from the repository, or give the built programs' directory):\n%s", err, p.Tail(30))
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o700)
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("localstack: %w", err)
	}
	return out.Close()
}
