package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/agentauthz/agentauthz/internal/policytest"
	"github.com/agentauthz/agentauthz/policy"
)

// runTest runs the test files beside each policy: agentauthz test DIR...
func runTest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	verbose := fs.Bool("v", false, "print passing cases too")
	var bundles multiFlag
	fs.Var(&bundles, "jwt-bundle", "TRUST_DOMAIN=FILE: a JWT bundle (JWKS) to validate JWT-SVIDs the cases carry (repeatable)")
	if ok, code := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "agentauthz test: name at least one policy directory")
		return exitUsage
	}
	passed, failed := 0, 0
	for _, dir := range fs.Args() {
		files, err := policy.ReadPath(dir)
		if err != nil {
			fmt.Fprintf(stderr, "agentauthz test: %v\n", err)
			return exitUsage
		}
		snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
		if err != nil {
			printLoadError(stderr, "test", err)
			return exitUsage
		}
		// Tests need no network: access tokens verify against the policy's keys, or are signed
		// offline from the cases' claims.
		e, claims, err := offlineEngine(snap, bundles, nil)
		if err != nil {
			fmt.Fprintf(stderr, "agentauthz test: %v\n", err)
			return exitUsage
		}
		tests, err := policytest.Files(dir)
		if err != nil {
			fmt.Fprintf(stderr, "agentauthz test: %v\n", err)
			return exitUsage
		}
		if len(tests) == 0 {
			fmt.Fprintf(stderr, "agentauthz test: %s has no test files (*_test.yaml)\n", dir)
			return exitUsage
		}
		for _, tf := range tests {
			cases, err := policytest.ReadCases(tf)
			if err != nil {
				fmt.Fprintf(stderr, "agentauthz test: %v\n", err)
				return exitUsage
			}
			for _, r := range policytest.Run(context.Background(), e, claims, cases) {
				if r.Passed() {
					passed++
					if *verbose {
						fmt.Fprintf(stdout, "ok   %s\n", r.Name)
					}
					continue
				}
				failed++
				for _, p := range r.Problems {
					fmt.Fprintf(stdout, "FAIL %s:%d: %s: %s\n", r.File, r.Line, r.Name, p)
				}
			}
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return exitDeny
	}
	return exitOK
}
