package main

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/agentauthz/agentauthz/internal/policytest"
)

// testJSON is what `agentauthz test --format json` prints: one object (docs/cli.md).
type testJSON struct {
	Passed int            `json:"passed"`
	Failed int            `json:"failed"`
	Cases  []testJSONCase `json:"cases"`
}

type testJSONCase struct {
	Name   string `json:"name"`
	File   string `json:"file"`
	Line   int    `json:"line"`
	Passed bool   `json:"passed"`
	// Problems says what the decision got wrong; empty when the case passed.
	Problems []string `json:"problems"`
	// Outcome and Code are the decision the case got.
	Outcome string `json:"outcome"`
	Code    string `json:"code"`
	Route   string `json:"route"`
}

func writeTestJSON(w io.Writer, results []policytest.Result, passed, failed int) error {
	out := testJSON{Passed: passed, Failed: failed, Cases: []testJSONCase{}}
	for _, r := range results {
		c := testJSONCase{Name: r.Name, File: r.File, Line: r.Line, Passed: r.Passed(), Problems: r.Problems,
			Outcome: r.Decision.Outcome.String(), Code: string(r.Decision.Code), Route: r.Decision.Rule}
		if c.Problems == nil {
			c.Problems = []string{}
		}
		out.Cases = append(out.Cases, c)
	}
	return encodeJSON(w, out)
}

// JUnit XML as CI systems read it (Jenkins, GitLab, GitHub Actions reporters): a testsuite per
// test file, a testcase per case, a failure element for a case that failed.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Line      int           `xml:"line,attr,omitempty"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func writeJUnit(w io.Writer, results []policytest.Result, passed, failed int) error {
	out := junitSuites{Name: "agentauthz test", Tests: passed + failed, Failures: failed}
	index := map[string]int{}
	for _, r := range results {
		i, ok := index[r.File]
		if !ok {
			i = len(out.Suites)
			index[r.File] = i
			out.Suites = append(out.Suites, junitSuite{Name: r.File})
		}
		s := &out.Suites[i]
		c := junitCase{Name: r.Name, Classname: strings.TrimSuffix(r.File, ".yaml"), File: r.File, Line: r.Line}
		s.Tests++
		if !r.Passed() {
			s.Failures++
			var text strings.Builder
			for _, p := range r.Problems {
				fmt.Fprintf(&text, "%s:%d: %s\n", r.File, r.Line, p)
			}
			c.Failure = &junitFailure{Message: r.Problems[0], Type: "policy decision", Text: text.String()}
		}
		s.Cases = append(s.Cases, c)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
