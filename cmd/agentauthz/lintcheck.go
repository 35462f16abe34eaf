package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/agentauthz/agentauthz/internal/approval/signin"
	"github.com/agentauthz/agentauthz/internal/policytest"
	"github.com/agentauthz/agentauthz/policy"
)

// lintChecks are lint's checks beyond loading the policy: the policy's quiet mistakes
// (policy.(*Snapshot).Lint), whether someone may approve each approval rule, credentials, and
// the policy's test files.
type lintChecks struct {
	checkSecrets bool
	approvers    string
	oidcIssuer   string
	tests        multiFlag
}

func (l *lintChecks) flags(fs *pflag.FlagSet) {
	fs.BoolVar(&l.checkSecrets, "check-secrets", false, "read every credential inject_headers names (environment variables, files), as serve does, and report each one missing")
	fs.StringVar(&l.approvers, "approvers", "", "the approvers file serve is given: report approval rules that none of its approvers may approve")
	fs.StringVar(&l.oidcIssuer, "oidc-issuer", "", "the OIDC issuer serve is given: approvers also sign in through it, so approval rules are not checked against --approvers alone")
	fs.Var(&l.tests, "tests", "a policy test file to check against the policy, besides the *_test.yaml files beside it (repeatable)")
}

// secrets is how the policy's credentials are read: not at all unless --check-secrets.
func (l *lintChecks) secrets() policy.SecretSource {
	if l.checkSecrets {
		return policy.EnvAndFiles
	}
	return policy.Placeholders
}

// problems returns what lint reports of a policy p that loaded as snap, and the warnings that do
// not fail lint. err is a file lint could not read.
func (l *lintChecks) problems(p string, snap *policy.Snapshot) (problems, warnings []string, err error) {
	var cfg policy.LintConfig
	if l.approvers != "" && l.oidcIssuer == "" {
		tokens, err := signin.ReadTokens(l.approvers)
		if err != nil {
			return nil, nil, fmt.Errorf("--approvers: %v", err)
		}
		cfg.Approvers = []policy.Approver{}
		for _, a := range tokens.Approvers() {
			cfg.Approvers = append(cfg.Approvers, policy.Approver{Name: a.Name, Groups: a.Groups})
		}
	}
	problems = append(problems, snap.Lint(cfg)...)
	if snap.HoldsRequests() && l.approvers == "" && l.oidcIssuer == "" {
		warnings = append(warnings, fmt.Sprintf("%s: warning: the policy holds requests for approval; lint it with the --approvers file (or --oidc-issuer) serve is given to check that someone may approve them", p))
	}
	files, err := policytest.Files(p)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range l.tests {
		if !slices.Contains(files, f) {
			files = append(files, f)
		}
	}
	for _, f := range files {
		cases, err := policytest.ReadCases(f)
		if err != nil {
			problems = append(problems, strings.Split(err.Error(), "\n")...)
			continue
		}
		problems = append(problems, policytest.Lint(cases, snap)...)
	}
	return problems, warnings, nil
}
