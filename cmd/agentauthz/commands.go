package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/agentauthz/agentauthz/internal/version"
)

// The command tree. Each command here only declares itself and hands its flags and arguments
// to its run function, which does the work and returns the exit code.

const rootLong = `agentauthz: authorization for AI agents calling internal APIs through Envoy.

It serves Envoy's ext_authz v3 gRPC API, and decides requests offline (check, test) with the
same engine. Exit status: 0 done (check: a decision was printed, allow or deny), 1 error,
2 bad usage, 3 denied (check --fail-on-deny), 4 the policy has problems, 5 a test case failed,
6 an audit log is not intact.`

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:     "agentauthz",
		Short:   "authorization for AI agents calling internal APIs through Envoy",
		Long:    rootLong,
		Version: version.Get().String(),
		// A mistake in the command line is one line; an error is the command's own line.
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				// No command: what the commands are, on stderr, as for any usage error.
				cmd.SetOut(cmd.ErrOrStderr())
				_ = cmd.Help()
				return exitCode(exitUsage)
			}
			return groupRun(cmd, args)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetUsageFunc(usage)
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(
		newServeCmd(stderr),
		newCheckCmd(stdout, stderr),
		newLintCmd(stdout, stderr),
		newTestCmd(stdout, stderr),
		newOpenAPICmd(stdout, stderr),
		newAuditCmd(stdout, stderr),
		newGraphQLIDCmd(stdout, stderr),
		newApprovalsCmd(stdout, stderr),
		newVersionCmd(stdout, stderr),
	)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			c.Short = "print the help of a command"
		}
		if c.Name() == "completion" {
			c.Short = "print a shell completion script: bash, zsh, fish or powershell"
			c.Args = cobra.ArbitraryArgs
			c.RunE = groupRun
		}
	}
	return root
}

func newServeCmd(stderr io.Writer) *cobra.Command {
	var o serveOptions
	c := &cobra.Command{
		Use:   "serve [flags]",
		Short: "serve Envoy's ext_authz v3 gRPC API (no flags: the demo policy)",
		Args:  cobra.ArbitraryArgs,
		RunE:  runE(func(_ *cobra.Command, args []string) int { return runServe(&o, args, stderr) }),
	}
	o.addFlags(c.Flags())
	markFiles(c, "policy", "http-tls-cert", "http-tls-key", "decision-log-key", "authzen-peps", "approvers", "slack-users", "mcp-state-key-file")
	completeWords(c, "log-level", "debug", "info", "warn", "error")
	return c
}

func newCheckCmd(stdout, stderr io.Writer) *cobra.Command {
	var o checkOptions
	c := &cobra.Command{
		Use:   "check [flags]",
		Short: "decide one request offline and say which rule decided it",
		Long: `Decide one request offline, with the server's engine, and say which rule decided it.

A deny is a decision, not an error: check exits with status 0 whether it allows or denies, and
with --fail-on-deny exits with status 3 on a deny. -o json prints the decision as one JSON object.`,
		Example: `  agentauthz check --agent spiffe://acme.internal/agent/helpdesk \
      --host helpdesk.acme.internal --path /v1/tickets/42
  agentauthz check --request request.yaml -o json --fail-on-deny`,
		Args: cobra.ArbitraryArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) int { return runCheck(&o, cmd.Flags(), args, stdout, stderr) }),
	}
	o.addFlags(c.Flags())
	markFiles(c, "policy", "request", "check-request", "token", "claims")
	completeWords(c, "output", "text", "json")
	completeWords(c, "method", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
	return c
}

func newLintCmd(stdout, stderr io.Writer) *cobra.Command {
	var o lintOptions
	c := &cobra.Command{
		Use:   "lint [flags] FILE|DIR...",
		Short: "validate policies and print every problem",
		Long: `Validate policies and print every problem, each with its file, line and column.

Exit status: 0 no problems, 4 problems found, 1 a path that could not be read, 2 bad usage.
--format json prints one JSON object; --format sarif prints SARIF 2.1.0 for code scanning.`,
		Args: cobra.ArbitraryArgs,
		RunE: runE(func(_ *cobra.Command, args []string) int { return runLint(&o, args, stdout, stderr) }),
	}
	o.addFlags(c.Flags())
	completeWords(c, "format", "text", "json", "sarif")
	return c
}

func newTestCmd(stdout, stderr io.Writer) *cobra.Command {
	var o testOptions
	c := &cobra.Command{
		Use:   "test [flags] DIR...",
		Short: "run the policy's test files (*_test.yaml) and report",
		Long: `Run the test files (*_test.yaml) beside each policy and report each case that failed.

Exit status: 0 every case passed, 5 a case failed, 4 the policy has problems, 1 a test file
that could not be read, 2 bad usage. --format json prints one JSON object; --format junit
prints JUnit XML for CI test reports.`,
		Args: cobra.ArbitraryArgs,
		RunE: runE(func(_ *cobra.Command, args []string) int { return runTest(&o, args, stdout, stderr) }),
	}
	o.addFlags(c.Flags())
	completeWords(c, "format", "text", "json", "junit")
	return c
}

func newOpenAPICmd(stdout, stderr io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use:   "openapi",
		Short: "a starting policy, or the routes, from an OpenAPI document",
		Long:  openAPILong,
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	var initOpts, routesOpts openAPIOptions
	initCmd := &cobra.Command{
		Use:   "init [flags] SPEC",
		Short: "write a starting policy granting nothing for an OpenAPI document",
		Args:  cobra.ArbitraryArgs,
		RunE:  runE(func(_ *cobra.Command, args []string) int { return runOpenAPIInit(&initOpts, args, stdout, stderr) }),
	}
	initOpts.addFlags(initCmd.Flags(), true)
	routesCmd := &cobra.Command{
		Use:   "routes [flags] SPEC",
		Short: "print the routes the document's operations compile into",
		Args:  cobra.ArbitraryArgs,
		RunE:  runE(func(_ *cobra.Command, args []string) int { return runOpenAPIRoutes(&routesOpts, args, stdout, stderr) }),
	}
	routesOpts.addFlags(routesCmd.Flags(), false)
	c.AddCommand(initCmd, routesCmd)
	return c
}

func newAuditCmd(stdout, stderr io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "check that audit logs are intact (tamper-evident chain)",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	var o auditVerifyOptions
	verify := &cobra.Command{
		Use:   "verify [--key FILE] [--from HEAD] [--head HEAD]... FILE...",
		Short: "check that audit logs are intact: each record hashed and chained to the one before",
		Long:  auditVerifyLong,
		Args:  cobra.ArbitraryArgs,
		// The flags are in Use already.
		DisableFlagsInUseLine: true,
		RunE:                  runE(func(_ *cobra.Command, args []string) int { return runAuditVerify(&o, args, stdout, stderr) }),
	}
	o.addFlags(verify.Flags())
	markFiles(verify, "key")
	c.AddCommand(verify)
	return c
}

func newGraphQLIDCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "graphql-id FILE...",
		Short: "print the persisted-operation id of GraphQL documents",
		Args:  cobra.ArbitraryArgs,
		RunE:  runE(func(_ *cobra.Command, args []string) int { return runGraphQLID(args, stdout, stderr) }),
	}
}

func newApprovalsCmd(stdout, stderr io.Writer) *cobra.Command {
	var o approvalsOptions
	c := &cobra.Command{
		Use:   "approvals",
		Short: "list, show, approve or deny held requests on a running server",
		Long:  approvalsLong,
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	o.addCommonFlags(c.PersistentFlags())
	for _, sub := range []struct{ name, use, short string }{
		{"list", "list [--state STATE] [--limit N] [--cursor C | --all]", "list the newest approvals, a page at a time"},
		{"show", "show ID", "show one approval: its request, state and who decided it"},
		{"approve", "approve ID [--comment TEXT]", "approve a held request: the agent may send it once"},
		{"deny", "deny ID [--comment TEXT]", "deny a held request"},
	} {
		sc := &cobra.Command{
			Use:                   sub.use,
			Short:                 sub.short,
			Args:                  cobra.ArbitraryArgs,
			DisableFlagsInUseLine: true,
			RunE:                  runE(func(_ *cobra.Command, args []string) int { return runApprovals(sub.name, &o, args, stdout, stderr) }),
		}
		o.addFlags(sc.Flags(), sub.name)
		if sub.name == "list" {
			completeWords(sc, "state", "pending", "approved", "denied", "expired", "used")
		}
		c.AddCommand(sc)
	}
	return c
}

func newVersionCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version, commit and Go version (also --version)",
		Args:  cobra.ArbitraryArgs,
		RunE: runE(func(_ *cobra.Command, args []string) int {
			if len(args) > 0 {
				fmt.Fprintf(stderr, "agentauthz version: unexpected argument %q\n", args[0])
				return exitUsage
			}
			fmt.Fprintln(stdout, version.Get())
			return exitOK
		}),
	}
}

// markFiles completes the named flags' values with file names.
func markFiles(c *cobra.Command, names ...string) {
	for _, n := range names {
		_ = c.MarkFlagFilename(n) // every name is a flag of c: a typo fails TestCompletion
	}
}

// completeWords completes the flag's value with one of words.
func completeWords(c *cobra.Command, flag string, words ...string) {
	_ = c.RegisterFlagCompletionFunc(flag, func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return words, cobra.ShellCompDirectiveNoFileComp
	})
}
