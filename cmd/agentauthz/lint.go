package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/agentauthz/agentauthz/policy"
)

// lintOptions are the flags of agentauthz lint.
type lintOptions struct {
	baselines baselineFlags
	format    string
	checks    lintChecks
}

func (o *lintOptions) addFlags(fs *pflag.FlagSet) {
	o.baselines = baselineFlags{}
	o.checks.flags(fs)
	fs.Var(o.baselines, "openapi-baseline", "DOC=OLDER-COPY: report the operations the policy grants whose parameters or schemas changed since an older copy of OpenAPI document DOC (as the policy names it); repeatable")
	fs.StringVar(&o.format, "format", "text", "how to print the problems: text, json or sarif (SARIF 2.1.0, for code scanning)")
}

// lintedPolicy is what lint found of one path it was given.
type lintedPolicy struct {
	Path     string
	Problems []lintProblem // none: the policy is sound
	Stats    policy.Stats
	Revision string
	Warnings []string // what does not fail lint, but should be looked at
	err      error    // the path could not be linted: it is not a policy, or not readable
}

// runLint validates the policies at args and reports every problem.
func runLint(o *lintOptions, args []string, stdout, stderr io.Writer) int {
	switch o.format {
	case "text", "json", "sarif":
	default:
		fmt.Fprintf(stderr, "agentauthz lint: --format %q: use text, json or sarif\n", o.format)
		return exitUsage
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, "agentauthz lint: name at least one policy file or directory")
		return exitUsage
	}
	var linted []lintedPolicy
	status := exitOK
	for _, p := range args {
		l := lintPath(p, o.baselines, &o.checks)
		if o.format == "text" { // the other formats carry them
			for _, w := range l.Warnings {
				fmt.Fprintln(stderr, w)
			}
		}
		switch {
		case l.err != nil:
			fmt.Fprintf(stderr, "agentauthz lint: %v\n", l.err)
			status = exitError // the worst: some policy could not even be read
		case len(l.Problems) > 0 && status == exitOK:
			status = exitProblems
		}
		if o.format == "text" {
			printLintText(stdout, &l)
		}
		linted = append(linted, l)
	}
	var err error
	switch o.format {
	case "json":
		err = writeLintJSON(stdout, linted)
	case "sarif":
		err = writeSARIF(stdout, linted)
	}
	if err != nil {
		fmt.Fprintf(stderr, "agentauthz lint: %v\n", err)
		return exitError
	}
	return status
}

// lintPath lints the policy at p: the problems of loading it, or, when it loads, its quiet
// mistakes (lintChecks), its test files' and those of its OpenAPI documents against their
// baselines.
func lintPath(p string, baselines baselineFlags, checks *lintChecks) lintedPolicy {
	l := lintedPolicy{Path: p}
	files, err := policy.ReadPath(p)
	if err != nil {
		l.err = err
		return l
	}
	// Credentials are not read unless asked: lint checks the policy, not the machine it runs on.
	snap, err := policy.Load(files, policy.Options{Secrets: checks.secrets()})
	var problems policy.Problems
	switch {
	case errors.As(err, &problems):
		l.Problems = parseProblems(problems, "")
		return l
	case err != nil:
		l.err = err
		return l
	}
	found, warnings, err := checks.problems(p, snap)
	if err != nil {
		l.err = err
		return l
	}
	l.Warnings = warnings
	for i := range found {
		found[i] = plainDecodeErrors(found[i])
	}
	l.Problems = parseProblems(found, "")
	if len(baselines) > 0 {
		drift, err := snap.OpenAPIDrift(baselines)
		if err != nil {
			l.err = err
			return l
		}
		l.Problems = append(l.Problems, parseProblems(drift, ruleOpenAPIDrift)...)
	}
	if len(l.Problems) == 0 {
		l.Stats, l.Revision = snap.Stats(), snap.Revision()
	}
	return l
}

func printLintText(w io.Writer, l *lintedPolicy) {
	switch {
	case l.err != nil:
	case len(l.Problems) > 0:
		for _, pr := range l.Problems {
			fmt.Fprintln(w, pr.Text)
		}
		fmt.Fprintf(w, "%s: %d problem(s)\n", l.Path, len(l.Problems))
	default:
		st := l.Stats
		mcp := ""
		if st.MCPServers > 0 {
			mcp = fmt.Sprintf(", %d MCP servers with %d tools", st.MCPServers, st.MCPTools)
		}
		fmt.Fprintf(w, "%s: ok: %d agents, %d hosts, %d routes%s (revision %s)\n", l.Path, st.Agents, st.Hosts, st.Routes, mcp, l.Revision)
	}
}
