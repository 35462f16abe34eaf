// Command agentauthz is the Envoy external-authorization service for AI agents.
//
//	agentauthz serve [--policy FILE|DIR] [--grpc-addr ADDR] [--http-addr ADDR]
//	agentauthz check [--policy FILE|DIR] (--request FILE | --check-request FILE | --agent ID --method M --host H --path P ...) [-o text|json]
//	agentauthz lint  [--format text|json|sarif] [--openapi-baseline DOC=OLD] FILE|DIR...
//	agentauthz openapi init|routes SPEC
//	agentauthz test  [--format text|json|junit] DIR...
//	agentauthz audit verify FILE...
//	agentauthz graphql-id FILE...
//	agentauthz approvals list|show|approve|deny
//	agentauthz completion bash|zsh|fish|powershell
//
// Each command's work is a run function taking its options; commands.go wires them into the
// command tree, so that a command's flags and its behaviour are read in one place.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes, the same for every command (docs/cli.md lists them). A decision, a finding or a
// failed case is a result that a pipeline branches on; an error is a command that could not do
// its work.
const (
	exitOK       = 0 // done: allowed, no problems, every case passed, intact
	exitError    = 1 // the command could not do its work: an unreadable file, a server out of reach
	exitUsage    = 2 // bad usage: unknown command or flag, a bad flag value, missing arguments
	exitDenied   = 3 // check --fail-on-deny: the request is denied; approvals: the server refused
	exitProblems = 4 // the policy has problems (lint, and any command whose policy does not load)
	exitFailed   = 5 // test: a case failed
	exitTampered = 6 // audit verify: the log is not intact
)

// run runs the command line args and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	// An unknown command is named as such, before the flags after it are read as the root's.
	// (The shells' completion requests are commands cobra adds as it runs.)
	if cmd, _, err := root.Find(args); err == nil && cmd == root && len(args) > 0 && !strings.HasPrefix(args[0], "-") &&
		args[0] != cobra.ShellCompRequestCmd && args[0] != cobra.ShellCompNoDescRequestCmd {
		fmt.Fprintln(stderr, groupRun(root, args[:1]))
		return exitUsage
	}
	if err := singleDashLong(root, args); err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	root.SetArgs(args)
	return execute(root, stderr)
}
