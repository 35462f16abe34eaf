package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// goTypeName matches what Go's decoders and fmt say of Go values: package-qualified type names
// (extauthz.HTTPRequest, *policy.Snapshot), composite types, and their fixed phrases.
var goTypeName = regexp.MustCompile(`\*?\b(?:extauthz|policy|policytest|engine|decision|main|approval|audit|service|server|pflag|cobra|yaml|json|time|strconv)\.[A-Z]\w*|map\[[a-z]+\]|interface \{\}|\[\][a-z]+\b|Go (?:value|struct)|%!|\bstrconv\.|\bfunc\(`)

// TestNoGoTypeNames runs commands with bad input of every kind a user can give (a file with
// unknown keys or wrong kinds of values, flag values of the wrong type, JSON of the wrong
// shape) and checks that what they print names no Go type.
func TestNoGoTypeNames(t *testing.T) {
	setCredential(t)
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrongKind := write("wrong-kind.yaml", "host: helpdesk.acme.internal\npath: /v1/tickets\nheaders: [a, b]\nbody: {x: 1}\n")
	unknownKey := write("unknown-key.yaml", "host: helpdesk.acme.internal\npth: /v1/tickets\n")
	notMapping := write("list.yaml", "- a\n- b\n")
	badCR := write("bad-cr.json", `{"attributes": {"request": {"http": {"headers": [1]}}}}`)
	claims := write("claims.yaml", "- not\n- claims\n")
	testDir := writePolicyTests(t, "- name: x\n  host: [a]\n  path: {p: 1}\n  want: maybe\n  bogus: 1\n")
	testDir2 := writePolicyTests(t, "name: not a list\n")
	host := []string{"--host", "helpdesk.acme.internal", "--path", "/v1/tickets"}
	for _, args := range [][]string{
		{"check", "--request", wrongKind},
		{"check", "--request", unknownKey},
		{"check", "--request", notMapping},
		{"check", "--check-request", badCR},
		{"check", "--claims", claims, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets"},
		append([]string{"check", "--mcp-tool", "x", "--mcp-args", "[1, 2]"}, host...),
		append([]string{"check", "--mcp-tool", "x", "--mcp-args", `{"a": `}, host...),
		append([]string{"check", "--mcp-method", "tools/list", "--mcp-params", `"x"`}, host...),
		append([]string{"check", "--fail-on-deny=maybe"}, host...),
		append([]string{"check", "--header", "no colon"}, host...),
		append([]string{"check", "--jwt-bundle", "nonsense"}, host...),
		{"check", "--request", wrongKind, "--agent", helpdesk},
		{"test", testDir},
		{"test", testDir2},
		{"lint", "testdata/bad-policy.yaml"},
		{"lint", "--openapi-baseline", "x", demoDir},
		{"serve", "--check-timeout", "soon"},
		{"serve", "--decision-log-rotate-size", "lots"},
		{"serve", "--grpc-socket-mode", "rw"},
		{"serve", "--insecure=perhaps"},
		{"approvals", "list", "--limit", "ten"},
		{"approvals", "list", "--all=sometimes"},
		{"audit", "verify", "--head", "x", wrongKind},
		{"audit", "verify", wrongKind},
		{"graphql-id", wrongKind},
		{"openapi", "routes", wrongKind},
	} {
		r := cli(t, args...)
		if r.code == exitOK {
			t.Errorf("agentauthz %s: exit 0 on bad input", strings.Join(args, " "))
		}
		if m := goTypeName.FindString(r.stdout + r.stderr); m != "" {
			t.Errorf("agentauthz %s names a Go type (%q):\n%s%s", strings.Join(args, " "), m, r.stdout, r.stderr)
		}
		if os.Getenv("AGENTAUTHZ_SHOW_BAD_INPUT") != "" {
			t.Logf("agentauthz %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		if r.code != exitProblems && r.code != exitFailed && r.code != exitTampered {
			oneLine(t, "stderr of "+strings.Join(args, " "), r.stderr)
		}
	}
}

// The pattern catches what the decoders say.
func TestGoTypeNamePattern(t *testing.T) {
	for _, s := range []string{
		"line 4: field pth not found in type extauthz.HTTPRequest",
		"json: cannot unmarshal array into Go value of type map[string]interface {}",
		"cannot unmarshal !!seq into map[string]string",
		"strconv.ParseInt: parsing \"ten\": invalid syntax",
		"%!s(int=1)",
		"*policy.Snapshot",
	} {
		if !goTypeName.MatchString(s) {
			t.Errorf("the pattern misses %q", s)
		}
	}
	if goTypeName.MatchString(`line 4: unknown key "pth" (known: principal, method)`) {
		t.Error("the pattern matches a plain message")
	}
}

func TestPlainDecodeErrors(t *testing.T) {
	for in, want := range map[string]string{
		"x.yaml:3: line 5: field bogus not found in type policytest.Case":                      `x.yaml:3: line 5: unknown key "bogus"`,
		"x.yaml:3: line 4: cannot unmarshal !!seq into string; line 5: cannot unmarshal !!map": "x.yaml:3: line 4: want a string, not a list; line 5: cannot unmarshal !!map",
		"line 2: cannot unmarshal !!str `maybe` into bool":                                     "line 2: want true or false, not a string",
		"line 2: cannot unmarshal !!seq into map[string]string\nnext":                          "line 2: want a mapping (an object), not a list\nnext",
		"t.yaml:1: unmarshal errors:;   line 2: field x not found in type policytest.Case":     `t.yaml:1: line 2: unknown key "x"`,
	} {
		if got := plainDecodeErrors(in); got != want {
			t.Errorf("plainDecodeErrors(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}

// TestSuggestions: a mistyped command or flag is one line naming the nearest one.
func TestSuggestions(t *testing.T) {
	setCredential(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"chek"}, `agentauthz: unknown command "chek" (did you mean check?); run agentauthz --help` + "\n"},
		{[]string{"lnt", "x"}, `agentauthz: unknown command "lnt" (did you mean lint?); run agentauthz --help` + "\n"},
		{[]string{"frobnicate"}, `agentauthz: unknown command "frobnicate"; run agentauthz --help` + "\n"},
		{[]string{"audit", "verfy"}, `agentauthz audit: unknown subcommand "verfy" (did you mean verify?); run agentauthz audit --help` + "\n"},
		{[]string{"openapi", "rout"}, `agentauthz openapi: unknown subcommand "rout" (did you mean routes?); run agentauthz openapi --help` + "\n"},
		{[]string{"check", "--polcy", "x"}, "agentauthz check: unknown flag --polcy (did you mean --policy?)\n"},
		{[]string{"check", "--explian"}, "agentauthz check: unknown flag --explian (did you mean --explain?)\n"},
		{[]string{"lint", "--fromat", "json", demoDir}, "agentauthz lint: unknown flag --fromat (did you mean --format?)\n"},
		{[]string{"serve", "--grpc-adr", "x"}, "agentauthz serve: unknown flag --grpc-adr (did you mean --grpc-addr?)\n"},
		{[]string{"check", "--zzzzzz"}, "agentauthz check: unknown flag --zzzzzz\n"},
		{[]string{"check", "-policy", demoDir}, "agentauthz check: unknown flag -policy: a long flag takes two dashes: --policy\n"},
		{[]string{"lint", "-format=json", demoDir}, "agentauthz lint: unknown flag -format: a long flag takes two dashes: --format\n"},
		{[]string{"check", "--agent"}, "agentauthz check: --agent needs a value\n"},
	} {
		r := cli(t, tc.args...)
		r.want(t, exitUsage)
		if r.stderr != tc.want || r.stdout != "" {
			t.Errorf("agentauthz %s:\nstderr %q\nwant   %q\nstdout %q", strings.Join(tc.args, " "), r.stderr, tc.want, r.stdout)
		}
	}
	// A value that looks like a flag is the value of the flag before it.
	r := cli(t, "check", "--path", "-policy", "--host", "helpdesk.acme.internal")
	r.want(t, exitOK)
}

func TestSuggest(t *testing.T) {
	names := []string{"policy", "path", "host", "header", "explain", "format"}
	for typed, want := range map[string]string{"polcy": "policy", "pth": "path", "hots": "host", "frmat": "format", "expl": "explain", "x": "", "zzzz": "", "": ""} {
		if got := suggest(typed, names); got != want {
			t.Errorf("suggest(%q) = %q, want %q", typed, got, want)
		}
	}
	for a, b := range map[[2]string]int{{"", ""}: 0, {"abc", ""}: 3, {"kitten", "sitting"}: 3, {"policy", "polcy"}: 1, {"flaw", "lawn"}: 2} {
		if got := levenshtein(a[0], a[1]); got != b {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", a[0], a[1], got, b)
		}
	}
}

// TestCompletion: completion scripts for the four shells, and completions of commands, flags
// and flag values.
func TestCompletion(t *testing.T) {
	for shell, marker := range map[string]string{"bash": "bash completion", "zsh": "#compdef agentauthz", "fish": "fish completion", "powershell": "powershell completion"} {
		r := cli(t, "completion", shell)
		r.want(t, exitOK)
		if !strings.Contains(strings.ToLower(r.stdout), strings.ToLower(marker)) || r.stderr != "" {
			t.Errorf("completion %s: no %q in %d bytes; stderr %q", shell, marker, len(r.stdout), r.stderr)
		}
	}
	r := cli(t, "completion", "tcsh")
	r.want(t, exitUsage)
	oneLine(t, "stderr", r.stderr)

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "ch"}, []string{"check"}},
		{[]string{"__complete", "check", "--fail"}, []string{"--fail-on-deny"}},
		{[]string{"__complete", "check", "-o", ""}, []string{"text", "json"}},
		{[]string{"__complete", "lint", "--format", ""}, []string{"text", "json", "sarif"}},
		{[]string{"__complete", "test", "--format", ""}, []string{"text", "json", "junit"}},
		{[]string{"__complete", "approvals", ""}, []string{"approve", "deny", "list", "show"}},
		{[]string{"__complete", "approvals", "list", "--state", ""}, []string{"pending", "approved", "denied", "expired", "used"}},
	} {
		r := cli(t, tc.args...)
		r.want(t, exitOK)
		var got []string
		for _, line := range strings.Split(r.stdout, "\n") {
			if line != "" && !strings.HasPrefix(line, ":") {
				name, _, _ := strings.Cut(line, "\t")
				got = append(got, name)
			}
		}
		for _, w := range tc.want {
			if !strings.Contains("\n"+strings.Join(got, "\n")+"\n", "\n"+w+"\n") {
				t.Errorf("%s: completions %v lack %q", strings.Join(tc.args, " "), got, w)
			}
		}
	}
}

// TestExitCodesDistinct: each kind of result has its own exit code.
func TestExitCodesDistinct(t *testing.T) {
	codes := map[int]string{}
	for name, code := range map[string]int{"ok": exitOK, "error": exitError, "usage": exitUsage, "denied": exitDenied,
		"problems": exitProblems, "failed": exitFailed, "tampered": exitTampered} {
		if other, dup := codes[code]; dup {
			t.Errorf("exit %d is both %s and %s", code, name, other)
		}
		codes[code] = name
	}
}

// TestExitCodeTable: the reference's table of exit statuses (docs/cli.md) says what each of
// these codes is.
func TestExitCodeTable(t *testing.T) {
	data, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\| (\d) \| (.*) \|$`).FindAllStringSubmatch(string(data), -1) {
		rows[m[1]] = m[2]
	}
	for code, word := range map[int]string{exitOK: "done", exitError: "error", exitUsage: "usage", exitDenied: "denied",
		exitProblems: "problems", exitFailed: "failed", exitTampered: "tampered"} {
		if row := rows[strconv.Itoa(code)]; !strings.HasPrefix(row, word+":") {
			t.Errorf("docs/cli.md: exit status %d is %q, want it to start %q", code, row, word+":")
		}
	}
	if len(rows) != 7 {
		t.Errorf("docs/cli.md lists %d exit statuses, want 7", len(rows))
	}
}
