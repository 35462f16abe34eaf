// Command agentauthz is the Envoy external-authorization service for AI agents.
//
//	agentauthz serve [--policy FILE|DIR] [--grpc-addr ADDR] [--http-addr ADDR]
//	agentauthz check [--policy FILE|DIR] (--request FILE | --check-request FILE | --agent ID --method M --host H --path P ...)
//	agentauthz lint  [--openapi-baseline DOC=OLD] FILE|DIR...
//	agentauthz openapi init|routes SPEC
//	agentauthz test  DIR...
//	agentauthz audit verify FILE...
//	agentauthz graphql-id FILE...
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/agentauthz/agentauthz/internal/version"
)

const usage = `agentauthz: authorization for AI agents calling internal APIs through Envoy

Usage:
  agentauthz serve [flags]       serve Envoy's ext_authz v3 gRPC API (no flags: the demo policy)
  agentauthz check [flags]       decide one request offline and say which rule decided it
  agentauthz lint FILE|DIR...    validate policies and print every problem
  agentauthz openapi ...         a starting policy, or the routes, from an OpenAPI document
  agentauthz test DIR...         run the policy's test files (*_test.yaml) and report
  agentauthz audit verify FILE   check that audit logs are intact (tamper-evident chain)
  agentauthz graphql-id FILE...  print the persisted-operation id of GraphQL documents
  agentauthz approvals ...       list, show, approve or deny held requests on a running server
  agentauthz version             print the version, commit and Go version (also --version)

Run "agentauthz COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes shared by the commands.
const (
	exitOK    = 0
	exitDeny  = 1 // check: the request is denied; lint: the policy has problems
	exitUsage = 2 // bad flags, unreadable files, a policy that does not load
)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return runServe(args[1:], stdout, stderr)
	case "check":
		return runCheck(args[1:], stdout, stderr)
	case "graphql-id":
		return runGraphQLID(args[1:], stdout, stderr)
	case "test":
		return runTest(args[1:], stdout, stderr)
	case "lint":
		return runLint(args[1:], stdout, stderr)
	case "openapi":
		return runOpenAPI(args[1:], stdout, stderr)
	case "audit":
		return runAudit(args[1:], stdout, stderr)
	case "approvals":
		return runApprovals(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "agentauthz version: unexpected argument %q\n", args[1])
			return exitUsage
		}
		fmt.Fprintln(stdout, version.Get())
		return exitOK
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "agentauthz: unknown command %q; run agentauthz --help\n", args[0])
		return exitUsage
	}
}

// parseFlags parses a command's flags, printing one line for a bad flag.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (ok bool, code int) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintf(stderr, "Usage of agentauthz %s:\n", fs.Name())
			fs.PrintDefaults()
			return false, exitOK
		}
		fmt.Fprintf(stderr, "agentauthz %s: %v\n", fs.Name(), err)
		return false, exitUsage
	}
	return true, exitOK
}
