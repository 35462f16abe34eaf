package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// lintFacts are what Load learns for `agentauthz lint` and deciding never reads: where each
// scope is held and required, who may approve each approval rule, and what each approval
// condition names that its route cannot have. They cost a few strings per rule of the policy.
type lintFacts struct {
	// held and required map a scope to where agents hold it and where rules require it.
	held, required map[string][]string
	// unheldOK and unrequiredOK are the scopes the policy says are deliberately held by no
	// agent, or required by nothing (Policy.lint), with where it says so.
	unheldOK, unrequiredOK map[string][]string
	holds                  []lintHold
	// when are the conditions' problems, found when the policy compiled.
	when Problems
	// rules are the names of the policy's routes and MCP tools (server/tool), as decisions name
	// them.
	rules map[string]bool
}

// lintHold is one approval rule: where its approvers are listed, and who they are.
type lintHold struct {
	where, rule string
	approvers   []string
	// approverAt is where each of approvers is written.
	approverAt []string
}

func newLintFacts() *lintFacts {
	return &lintFacts{held: map[string][]string{}, required: map[string][]string{},
		unheldOK: map[string][]string{}, unrequiredOK: map[string][]string{}, rules: map[string]bool{}}
}

// held records that an agent holds scope.
func (c *compiler) held(src *source, at, scope string) {
	c.lint.held[scope] = append(c.lint.held[scope], src.where(at))
}

// requires records that a rule requires scope.
func (c *compiler) requires(src *source, at, scope string) {
	w := src.where(at)
	if !contains(c.lint.required[scope], w) { // operations granted by one tag require it at one place
		c.lint.required[scope] = append(c.lint.required[scope], w)
	}
}

// lintExceptions records the policy file's deliberate exceptions.
func (c *compiler) lintExceptions(src *source) {
	l := src.policy.GetLint()
	for i, s := range l.GetUnheldScopes() {
		c.lint.unheldOK[s] = append(c.lint.unheldOK[s], src.where(fmt.Sprintf("lint.unheld_scopes[%d]", i)))
	}
	for i, s := range l.GetUnrequiredScopes() {
		c.lint.unrequiredOK[s] = append(c.lint.unrequiredOK[s], src.where(fmt.Sprintf("lint.unrequired_scopes[%d]", i)))
	}
}

// Approver is a person who can sign in to decide held requests, as lint is told of them (an
// approvers file).
type Approver struct {
	Name   string
	Groups []string
}

// LintConfig is what `agentauthz lint` knows beyond the policy.
type LintConfig struct {
	// Approvers, when not nil, is everyone who can sign in to approve: an approval rule whose
	// approvers name none of them can never be approved. Nil: not checked (approvers sign in
	// through an identity provider, whose people lint cannot list, or lint was told of none).
	Approvers []Approver
}

// Lint reports what loads but is most likely a mistake, each problem on its own line with file
// and position:
//
//   - a scope that a rule requires and no agent holds (every agent is refused the rule), unless
//     the policy lists it under lint.unheld_scopes or has no agents at all (a starting policy);
//   - a scope an agent holds and no rule requires (often a misspelling of one that is), unless
//     listed under lint.unrequired_scopes; an exception that is no longer true is reported too;
//   - an approval condition that names a path or query parameter its route does not have, or a
//     body field that the route's JSON Schema or protobuf message (or an MCP tool's argument
//     schemas) cannot have (the condition fails to evaluate, or is always false, on every
//     request);
//   - with cfg.Approvers, an approval rule that none of them may approve, and each user or group
//     a rule names that is none of them.
func (s *Snapshot) Lint(cfg LintConfig) Problems {
	l := s.lint
	if l == nil {
		return nil
	}
	var out Problems
	for _, scope := range sortedKeys(l.required) {
		_, held := l.held[scope]
		switch ok := l.unheldOK[scope]; {
		case !held && ok == nil && len(s.agents) > 0:
			// A policy of no agents grants nothing on purpose (agentauthz openapi init writes
			// one): every scope is unheld, and saying so of each is noise.
			for _, at := range l.required[scope] {
				out = append(out, fmt.Sprintf("%s: no agent holds scope %s, so every agent is refused this: grant it, or list it under lint.unheld_scopes if that is deliberate", at, scope))
			}
		case held && ok != nil:
			for _, at := range ok {
				out = append(out, fmt.Sprintf("%s: an agent holds scope %s (%s): remove it from lint.unheld_scopes", at, scope, l.held[scope][0]))
			}
		}
	}
	for _, scope := range sortedKeys(l.held) {
		_, required := l.required[scope]
		switch ok := l.unrequiredOK[scope]; {
		case !required && ok == nil:
			for _, at := range l.held[scope] {
				out = append(out, fmt.Sprintf("%s: no route, operation or tool requires scope %s: holding it grants nothing (a misspelling?); remove it, or list it under lint.unrequired_scopes if that is deliberate", at, scope))
			}
		case required && ok != nil:
			for _, at := range ok {
				out = append(out, fmt.Sprintf("%s: scope %s is required (%s): remove it from lint.unrequired_scopes", at, scope, l.required[scope][0]))
			}
		}
	}
	for _, scope := range sortedKeys(l.unheldOK) {
		if _, ok := l.required[scope]; !ok {
			for _, at := range l.unheldOK[scope] {
				out = append(out, fmt.Sprintf("%s: nothing requires scope %s: remove it from lint.unheld_scopes", at, scope))
			}
		}
	}
	for _, scope := range sortedKeys(l.unrequiredOK) {
		if _, ok := l.held[scope]; !ok {
			for _, at := range l.unrequiredOK[scope] {
				out = append(out, fmt.Sprintf("%s: no agent holds scope %s: remove it from lint.unrequired_scopes", at, scope))
			}
		}
	}
	out = append(out, l.when...)
	if cfg.Approvers != nil {
		for _, h := range l.holds {
			if !anyMay(cfg.Approvers, h.approvers) {
				out = append(out, fmt.Sprintf("%s: no approver may approve %s: none of %s is a user or group of the approvers given", h.where, h.rule, strings.Join(h.approvers, ", ")))
				continue
			}
			for i, a := range h.approvers {
				if !anyMay(cfg.Approvers, []string{a}) {
					out = append(out, fmt.Sprintf("%s: %s names no approver given (a misspelling?); the others of %s may approve it", h.approverAt[i], a, h.rule))
				}
			}
		}
	}
	sortProblems(out)
	return out
}

// anyMay reports whether one of people is one of approvers ("user:NAME", "group:NAME").
func anyMay(people []Approver, approvers []string) bool {
	for _, a := range approvers {
		kind, name, _ := strings.Cut(a, ":")
		for _, p := range people {
			if kind == "user" && p.Name == name {
				return true
			}
			if kind == "group" {
				for _, g := range p.Groups {
					if g == name {
						return true
					}
				}
			}
		}
	}
	return false
}

// HoldsRequests reports whether any route or tool of the policy holds requests for approval.
func (s *Snapshot) HoldsRequests() bool { return s.lint != nil && len(s.lint.holds) > 0 }

// HasAgent reports whether id is an agent of the policy (in shadow files too).
func (s *Snapshot) HasAgent(id string) bool {
	sid, err := spiffeid.FromString(id)
	if err != nil {
		return false
	}
	_, ok := s.agents[sid]
	return ok
}

// HasHost reports whether the policy has a host of that name (as agents address it).
func (s *Snapshot) HasHost(name string) bool {
	_, ok := s.hosts[asciiLower(name)]
	return ok
}

// HasRule reports whether a decision can name rule: a route of the policy, or an MCP tool as
// server/tool.
func (s *Snapshot) HasRule(rule string) bool { return s.lint != nil && s.lint.rules[rule] }

// sortProblems puts problems in file order, then reading order within a file.
func sortProblems(out Problems) {
	file := func(p string) string {
		f, _, _ := strings.Cut(p, ":")
		return f
	}
	sort.SliceStable(out, func(i, j int) bool {
		fi, fj := file(out[i]), file(out[j])
		if fi != fj {
			return fi < fj
		}
		li, ci := problemPos(fi, out[i])
		lj, cj := problemPos(fj, out[j])
		if li != lj {
			return li < lj
		}
		return ci < cj
	})
}
