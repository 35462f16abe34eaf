package main

import (
	"encoding/json"
	"io"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/agentauthz/agentauthz/internal/version"
)

// lintProblem is one problem lint found, read back from the policy's line
// "FILE:LINE:COL: [FIELD: ]MESSAGE".
type lintProblem struct {
	Text    string // the line as the text format prints it
	File    string
	Line    int // 0: the problem is about the whole file
	Column  int
	Field   string // the policy field, e.g. hosts[0].routes[1].path; "" when the message names none
	Rule    string // the rule id: what kind of problem it is (lintRules)
	Message string
	warning bool // does not fail lint
}

// The rule ids of lint's problems. A problem of the policy's schema is named by the schema
// constraint it breaks (string.pattern, repeated.min_items, ...); the others by what they are.
const (
	ruleUnknownField = "unknown-field" // a key the policy format does not have
	ruleDuplicateKey = "duplicate-key" // a key given twice in one mapping
	ruleSyntax       = "yaml-syntax"   // not YAML, or not a policy document
	ruleOpenAPIDrift = "openapi-drift" // --openapi-baseline: a granted operation changed
	ruleReference    = "reference"     // a name that refers to nothing, a value that cannot be compiled
	ruleScopeUnheld  = "scope-unheld"  // a scope required that no agent holds
	ruleScopeUnused  = "scope-unrequired"
	ruleWhen         = "approval-when"
	ruleApprovers    = "approvers"
	ruleCredential   = "credential"
	ruleTestCase     = "test-case"
	ruleApproversNot = "approvers-not-given" // a warning: approval rules, and no approvers to check them against
)

// lintRules describes each rule id that is not a schema constraint, for SARIF's rule list.
var lintRules = map[string]string{
	ruleUnknownField: "A key that the policy format does not have: a misspelt field.",
	ruleDuplicateKey: "A key given twice in one mapping: which one counts would be a guess.",
	ruleSyntax:       "A file that is not YAML, or not one policy document.",
	ruleOpenAPIDrift: "An operation the policy grants changed in its OpenAPI document since the baseline copy.",
	ruleReference:    "A value that cannot be compiled: an unknown name, a bad pattern, a conflicting route.",
	ruleScopeUnheld:  "A scope that a route, operation or tool requires and no agent holds: every agent is refused it.",
	ruleScopeUnused:  "A scope an agent holds and nothing requires: it grants nothing (a misspelling?).",
	ruleWhen:         "An approval condition that names a field its route's parameters, schema or message cannot have.",
	ruleApprovers:    "An approval rule none of the approvers given may approve, or an approver that names no one.",
	ruleCredential:   "A credential inject_headers names that is not there (--check-secrets).",
	ruleTestCase:     "A policy test case that cannot pass or cannot be read: an unknown key, rule, reason code, agent or host.",
	ruleApproversNot: "The policy holds requests for approval, and lint was not given the approvers to check them against.",
}

var (
	problemAt     = regexp.MustCompile(`^(.+?):(\d+):(\d+): (.*)$`)
	problemInFile = regexp.MustCompile(`^(.+?\.(?:ya?ml|json)): (.*)$`)
	problemAtLine = regexp.MustCompile(`^(.+?\.ya?ml):(\d+): (.*)$`)
	problemField  = regexp.MustCompile(`^([a-z_]+(?:\[\d+\]|\["[^"]*"\])?(?:\.[a-z_]+(?:\[\d+\]|\["[^"]*"\])?)*): (.*)$`)
	schemaRule    = regexp.MustCompile(` \(([a-z0-9_]+\.[a-z0-9_.]+)\)$`)
)

// parseProblems reads the policy's problem lines back into their parts. rule, if set, is the
// rule of every problem.
func parseProblems(lines []string, rule string) []lintProblem {
	out := make([]lintProblem, 0, len(lines))
	for _, s := range lines {
		p := lintProblem{Text: s, Message: s}
		if m := problemAt.FindStringSubmatch(s); m != nil {
			p.File, p.Message = m[1], m[4]
			p.Line, _ = strconv.Atoi(m[2])
			p.Column, _ = strconv.Atoi(m[3])
		} else if m := problemAtLine.FindStringSubmatch(s); m != nil {
			p.File, p.Message = m[1], m[3]
			p.Line, _ = strconv.Atoi(m[2])
		} else if m := problemInFile.FindStringSubmatch(s); m != nil {
			p.File, p.Message = m[1], m[2]
		}
		if m := problemField.FindStringSubmatch(p.Message); m != nil {
			p.Field = m[1]
		}
		p.Rule = rule
		if p.Rule == "" {
			p.Rule = problemRule(p.File, p.Field, p.Message)
		}
		out = append(out, p)
	}
	return out
}

// problemRule names the kind of problem of a line in file: what the policy's checks say, as
// they word it.
func problemRule(file, field, msg string) string {
	switch {
	case strings.HasSuffix(file, "_test.yaml"), strings.HasSuffix(file, "_test.yml"):
		return ruleTestCase
	case strings.HasSuffix(field, ".when"):
		return ruleWhen
	case strings.HasPrefix(field, "lint.unheld_scopes"):
		return ruleScopeUnheld
	case strings.HasPrefix(field, "lint.unrequired_scopes"):
		return ruleScopeUnused
	case strings.Contains(field, "inject_headers") && strings.Contains(msg, "credential"):
		return ruleCredential
	case strings.Contains(msg, "no approver may approve"), strings.Contains(msg, "names no approver given"):
		return ruleApprovers
	case strings.Contains(msg, ": no agent holds scope "):
		return ruleScopeUnheld
	case strings.Contains(msg, "requires scope "), strings.Contains(msg, ": nothing requires scope "):
		return ruleScopeUnused
	}
	switch {
	case strings.HasPrefix(msg, "unknown field "):
		return ruleUnknownField
	case strings.HasPrefix(msg, "duplicate key "):
		return ruleDuplicateKey
	}
	if m := schemaRule.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	if problemField.MatchString(msg) {
		return ruleReference
	}
	return ruleSyntax
}

// lintJSON is what `agentauthz lint --format json` prints: one object (docs/cli.md).
type lintJSON struct {
	// Policies are the paths given, in order.
	Policies []lintJSONPolicy `json:"policies"`
	// Problems counts the problems of every path.
	Problems int `json:"problems"`
}

type lintJSONPolicy struct {
	Path string `json:"path"`
	// OK is true when the policy loads without problems.
	OK bool `json:"ok"`
	// Error says why the path could not be linted (it is not readable, not a policy).
	Error    string            `json:"error,omitempty"`
	Revision string            `json:"revision,omitempty"`
	Stats    *lintJSONStats    `json:"stats,omitempty"`
	Problems []lintJSONProblem `json:"problems"`
	// Warnings do not fail lint, but should be looked at.
	Warnings []string `json:"warnings,omitempty"`
}

type lintJSONStats struct {
	Agents     int `json:"agents"`
	Hosts      int `json:"hosts"`
	Routes     int `json:"routes"`
	MCPServers int `json:"mcp_servers"`
	MCPTools   int `json:"mcp_tools"`
}

type lintJSONProblem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Field   string `json:"field,omitempty"`
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

func writeLintJSON(w io.Writer, linted []lintedPolicy) error {
	out := lintJSON{Policies: []lintJSONPolicy{}}
	for _, l := range linted {
		p := lintJSONPolicy{Path: l.Path, OK: l.err == nil && len(l.Problems) == 0, Problems: []lintJSONProblem{}, Warnings: l.Warnings}
		if l.err != nil {
			p.Error = l.err.Error()
		} else if p.OK {
			st := l.Stats
			p.Revision = l.Revision
			p.Stats = &lintJSONStats{Agents: st.Agents, Hosts: st.Hosts, Routes: st.Routes, MCPServers: st.MCPServers, MCPTools: st.MCPTools}
		}
		for _, pr := range l.Problems {
			p.Problems = append(p.Problems, lintJSONProblem{File: pr.File, Line: pr.Line, Column: pr.Column, Field: pr.Field, Rule: pr.Rule, Message: pr.Message})
		}
		out.Problems += len(l.Problems)
		out.Policies = append(out.Policies, p)
	}
	return encodeJSON(w, out)
}

func encodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// SARIF 2.1.0 (OASIS), the part lint writes: one run of one tool, a result per problem with
// its rule and where it is. Code scanning services read it.
const (
	sarifVersion = "2.1.0"
	sarifSchema  = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)

type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID               string       `json:"id"`
	ShortDescription sarifMessage `json:"shortDescription"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	RuleIndex int             `json:"ruleIndex"`
	Level     string          `json:"level"`
	Message   sarifMessage    `json:"message"`
	Locations []sarifLocation `json:"locations,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysicalLocation `json:"physicalLocation"`
}

type sarifPhysicalLocation struct {
	ArtifactLocation sarifArtifactLocation `json:"artifactLocation"`
	Region           *sarifRegion          `json:"region,omitempty"`
}

type sarifArtifactLocation struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine   int `json:"startLine"`
	StartColumn int `json:"startColumn,omitempty"`
}

func writeSARIF(w io.Writer, linted []lintedPolicy) error {
	run := sarifRun{
		Tool: sarifTool{Driver: sarifDriver{
			Name:           "agentauthz",
			Version:        version.Get().Version,
			InformationURI: "https://github.com/agentauthz/agentauthz",
		}},
		Results: []sarifResult{},
	}
	index := map[string]int{}
	var problems []lintProblem
	for _, l := range linted {
		problems = append(problems, l.Problems...)
		for _, w := range l.Warnings {
			problems = append(problems, lintProblem{Text: w, Rule: ruleApproversNot, Message: w, warning: true})
		}
	}
	var ids []string
	for _, p := range problems {
		if _, ok := index[p.Rule]; !ok {
			index[p.Rule] = 0
			ids = append(ids, p.Rule)
		}
	}
	slices.Sort(ids)
	for i, id := range ids {
		index[id] = i
		desc, ok := lintRules[id]
		if !ok {
			desc = "A value that breaks the policy schema's constraint " + id + "."
		}
		run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRule{ID: id, ShortDescription: sarifMessage{Text: desc}})
	}
	if run.Tool.Driver.Rules == nil {
		run.Tool.Driver.Rules = []sarifRule{}
	}
	for _, p := range problems {
		msg := p.Message
		level := "error"
		if p.warning {
			level = "warning"
		}
		res := sarifResult{RuleID: p.Rule, RuleIndex: index[p.Rule], Level: level, Message: sarifMessage{Text: msg}}
		if p.File != "" {
			loc := sarifLocation{PhysicalLocation: sarifPhysicalLocation{ArtifactLocation: sarifArtifactLocation{URI: fileURI(p.File)}}}
			if p.Line > 0 {
				loc.PhysicalLocation.Region = &sarifRegion{StartLine: p.Line, StartColumn: p.Column}
			}
			res.Locations = []sarifLocation{loc}
		}
		run.Results = append(run.Results, res)
	}
	return encodeJSON(w, sarifLog{Schema: sarifSchema, Version: sarifVersion, Runs: []sarifRun{run}})
}

// fileURI is the URI reference of a file name: a relative reference for a relative name (code
// scanning resolves it against the repository), a file: URI for an absolute one.
func fileURI(name string) string {
	u := url.URL{Path: filepath.ToSlash(name)}
	if filepath.IsAbs(name) {
		u.Scheme = "file"
	}
	return u.String()
}
