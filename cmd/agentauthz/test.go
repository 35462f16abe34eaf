package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/agentauthz/agentauthz/internal/policytest"
	"github.com/agentauthz/agentauthz/policy"
)

// testOptions are the flags of agentauthz test.
type testOptions struct {
	verbose bool
	bundles multiFlag
	format  string
}

func (o *testOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "print passing cases too (text format)")
	fs.Var(&o.bundles, "jwt-bundle", "TRUST_DOMAIN=FILE: a JWT bundle (JWKS) to validate JWT-SVIDs the cases carry (repeatable)")
	fs.StringVar(&o.format, "format", "text", "how to print the results: text, json, or junit (JUnit XML, for CI test reports)")
}

// runTest runs the test files beside each policy: agentauthz test DIR...
func runTest(o *testOptions, args []string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "agentauthz test: %s\n", plainDecodeErrors(err.Error()))
		return exitError
	}
	switch o.format {
	case "text", "json", "junit":
	default:
		fmt.Fprintf(stderr, "agentauthz test: --format %q: use text, json or junit\n", o.format)
		return exitUsage
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, "agentauthz test: name at least one policy directory")
		return exitUsage
	}
	var results []policytest.Result
	passed, failed := 0, 0
	for _, dir := range args {
		files, err := policy.ReadPath(dir)
		if err != nil {
			return fail(err)
		}
		snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
		if err != nil {
			return printLoadError(stderr, "test", err)
		}
		// Tests need no network: access tokens verify against the policy's keys, or are signed
		// offline from the cases' claims.
		e, claims, err := offlineEngine(snap, o.bundles, nil)
		if err != nil {
			return fail(err)
		}
		tests, err := policytest.Files(dir)
		if err != nil {
			return fail(err)
		}
		if len(tests) == 0 {
			return fail(fmt.Errorf("%s has no test files (*_test.yaml)", dir))
		}
		for _, tf := range tests {
			cases, err := policytest.ReadCases(tf)
			if err != nil {
				return fail(err)
			}
			for _, r := range policytest.Run(context.Background(), e, claims, cases) {
				results = append(results, r)
				if !r.Passed() {
					failed++
					continue
				}
				passed++
			}
		}
	}
	var err error
	switch o.format {
	case "json":
		err = writeTestJSON(stdout, results, passed, failed)
	case "junit":
		err = writeJUnit(stdout, results, passed, failed)
	default:
		printTestText(stdout, results, o.verbose)
		fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	}
	if err != nil {
		return fail(err)
	}
	if failed > 0 {
		return exitFailed
	}
	return exitOK
}

func printTestText(w io.Writer, results []policytest.Result, verbose bool) {
	for _, r := range results {
		if r.Passed() {
			if verbose {
				fmt.Fprintf(w, "ok   %s\n", r.Name)
			}
			continue
		}
		for _, p := range r.Problems {
			fmt.Fprintf(w, "FAIL %s:%d: %s: %s\n", r.File, r.Line, r.Name, p)
		}
	}
}
