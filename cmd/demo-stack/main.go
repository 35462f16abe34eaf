// Command demo-stack plays the whole demo without Docker: the SPIRE server and agent, Envoy,
// agentauthz, the demo helpdesk and BI APIs and the scripted demo agents run as local processes
// on loopback, with every certificate from SPIRE, in a temporary directory. It plays both
// stories (the helpdesk agent's tickets, comment and password reset held for approval; the BI
// agent's reports and refusals), prints each step, and stops everything when the stories end,
// on Ctrl-C or SIGTERM.
//
//	go run ./cmd/demo-stack                 # approve the password reset yourself when asked
//	go run ./cmd/demo-stack -auto-approve   # the demo approver approves it (CI)
//
// It needs SPIRE 1.13.3 (AGENTAUTHZ_SPIRE_BIN, or built into ~/.cache/agentauthz/spire-v1.13.3)
// and Envoy 1.40.0 (AGENTAUTHZ_ENVOY, envoy on PATH, or ~/.cache/agentauthz/envoy-1.40.0); it
// says how to get whichever is missing. compose/README.md describes the story; the same Envoy
// and SPIRE configuration files run here, rendered with local addresses and paths.
//
// It exits 0 when both stories went as the demo expects, 1 when one did not or a part failed
// to start, 2 on usage errors or missing parts, 130 when interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/agentauthz/agentauthz/internal/demo/localstack"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("demo-stack", flag.ContinueOnError)
	var cfg localstack.Config
	fs.BoolVar(&cfg.AutoApprove, "auto-approve", false, "approve the held password reset as the demo approver alice, through the approvals API")
	fs.DurationVar(&cfg.ApprovalTimeout, "approval-timeout", 15*time.Minute, "how long the helpdesk agent waits for the approval")
	fs.BoolVar(&cfg.Stay, "stay", false, "keep everything running after the stories, until Ctrl-C")
	fs.StringVar(&cfg.Dir, "dir", "", "working directory for sockets, state and logs (default: a new temporary directory, removed at the end)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the temporary working directory (logs) at the end")
	fs.StringVar(&cfg.BinDir, "bin", "", "directory of agentauthz, helpdesk-api, bi-api and demo-agent already built (default: go build them)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo-stack: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg.Out = os.Stdout

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Printf("\n== %s: stopping everything (once more to kill at once).\n", sig)
		// The next one ends this process at once; every child dies with it (Pdeathsig).
		signal.Stop(sigs)
		cancel()
	}()

	err := localstack.Run(ctx, cfg)
	var missing *localstack.MissingError
	switch {
	case err == nil:
		fmt.Println("Both stories went as the demo expects.")
		return 0
	case errors.Is(err, localstack.ErrInterrupted):
		return 130
	case errors.As(err, &missing):
		fmt.Fprintln(os.Stderr, "demo-stack:", err)
		return 2
	default:
		fmt.Fprintln(os.Stderr, "demo-stack:", err)
		return 1
	}
}
