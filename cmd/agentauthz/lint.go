package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/agentauthz/agentauthz/policy"
)

func runLint(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	baselines := baselineFlags{}
	var checks lintChecks
	checks.flags(fs)
	fs.Var(baselines, "openapi-baseline", "DOC=OLDER-COPY: report the operations the policy grants whose parameters or schemas changed since an older copy of OpenAPI document DOC (as the policy names it); repeatable")
	if ok, code := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "agentauthz lint: name at least one policy file or directory")
		return exitUsage
	}
	status := exitOK
	for _, p := range fs.Args() {
		files, err := policy.ReadPath(p)
		if err != nil {
			fmt.Fprintf(stderr, "agentauthz lint: %v\n", err)
			status = exitUsage
			continue
		}
		// Credentials are not read unless asked: lint checks the policy, not the machine it runs on.
		snap, err := policy.Load(files, policy.Options{Secrets: checks.secrets()})
		var problems policy.Problems
		switch {
		case errors.As(err, &problems):
			for _, pr := range problems {
				fmt.Fprintln(stdout, pr)
			}
			fmt.Fprintf(stdout, "%s: %d problem(s)\n", p, len(problems))
			if status == exitOK {
				status = exitDeny
			}
		case err != nil:
			fmt.Fprintf(stderr, "agentauthz lint: %v\n", err)
			status = exitUsage
		default:
			found, warnings, err := checks.problems(p, snap)
			if err != nil {
				fmt.Fprintf(stderr, "agentauthz lint: %v\n", err)
				status = exitUsage
				continue
			}
			if len(baselines) > 0 {
				drift, err := snap.OpenAPIDrift(baselines)
				if err != nil {
					fmt.Fprintf(stderr, "agentauthz lint: %v\n", err)
					status = exitUsage
					continue
				}
				found = append(found, drift...)
			}
			for _, w := range warnings {
				fmt.Fprintln(stderr, w)
			}
			if len(found) > 0 {
				for _, pr := range found {
					fmt.Fprintln(stdout, pr)
				}
				fmt.Fprintf(stdout, "%s: %d problem(s)\n", p, len(found))
				if status == exitOK {
					status = exitDeny
				}
				continue
			}
			st := snap.Stats()
			mcp := ""
			if st.MCPServers > 0 {
				mcp = fmt.Sprintf(", %d MCP servers with %d tools", st.MCPServers, st.MCPTools)
			}
			fmt.Fprintf(stdout, "%s: ok: %d agents, %d hosts, %d routes%s (revision %s)\n", p, st.Agents, st.Hosts, st.Routes, mcp, snap.Revision())
		}
	}
	return status
}
