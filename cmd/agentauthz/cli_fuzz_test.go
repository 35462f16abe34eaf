package main

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// FuzzCommandLine reads arbitrary command lines as the commands that run nothing until their
// flags are read would: the unknown-command and single-dash checks on the whole line, then each
// command's flags. Whatever the line, nothing panics, and a refused flag is one line in the
// words of the command line.
func FuzzCommandLine(f *testing.F) {
	for _, seed := range []string{
		"check\x00--polcy\x00x",
		"check\x00-policy\x00x",
		"check\x00--path\x00-policy",
		"lint\x00-format=json\x00p",
		"check\x00--fail-on-deny=maybe",
		"serve\x00--check-timeout\x00soon",
		"approvals\x00list\x00--limit\x00ten",
		"audit\x00verify\x00--head\x00x",
		"chek\x00--policy",
		"check\x00---x",
		"check\x00-o",
		"check\x00--header\x00:",
		"-\x00--\x00-=",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if len(line) > 1024 {
			// Command lines are short, and minimising a long input the fuzzer finds
			// interesting stalls a 20000x run for half a minute.
			return
		}
		args := strings.Split(line, "\x00")
		root := newRootCmd(io.Discard, io.Discard)
		if err := singleDashLong(root, args); err != nil {
			assertOneLine(t, line, err.Error())
		}
		cmd, rest, err := root.Find(args)
		if err != nil || cmd == root {
			if len(args) > 0 {
				assertOneLine(t, line, groupRun(root, args[:1]).Error())
			}
			return
		}
		if err := cmd.ParseFlags(rest); err != nil {
			assertOneLine(t, line, flagError(cmd, err).Error())
		}
	})
}

// assertOneLine checks a message about the command line typed: not empty, and naming no Go
// type other than what was typed.
func assertOneLine(t *testing.T, typed, msg string) {
	t.Helper()
	if strings.TrimSpace(msg) == "" {
		t.Fatalf("an empty message for %q", typed)
	}
	for _, m := range goTypeName.FindAllString(msg, -1) {
		if !strings.Contains(typed, m) {
			t.Fatalf("names a Go type (%q): %q", m, msg)
		}
	}
}

// FuzzPlainDecodeErrors: rewriting decoder messages never panics, and leaves none of the
// decoder's Go words in a message that had only them.
func FuzzPlainDecodeErrors(f *testing.F) {
	for _, seed := range []string{
		"x.yaml:3: line 5: field bogus not found in type policytest.Case",
		"line 4: cannot unmarshal !!seq into string; line 5: cannot unmarshal !!map into map[string]string",
		"line 2: cannot unmarshal !!str `maybe` into bool",
		"t.yaml:1: unmarshal errors:;   line 2: field x not found in type a.B",
		"field  not found in type ",
		"cannot unmarshal !! into",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		out := plainDecodeErrors(msg)
		if strings.Contains(msg, " not found in type ") {
			return // not every such phrase is the decoder's
		}
		if len(out) > 2*len(msg)+64 {
			t.Fatalf("%q grew to %q", msg, out)
		}
	})
}

// FuzzParseProblems: any problem line reads back into parts that SARIF and JSON can carry: the
// line kept whole, a region only with a line number, valid JSON out.
func FuzzParseProblems(f *testing.F) {
	for _, seed := range []string{
		"testdata/bad-policy.yaml:5:5: unknown field \"scoeps\", expected one of [id scopes description]",
		"p.yaml:10:17: hosts[0].routes[0].method: does not match regex pattern `^[A-Z]{1,16}$` (string.pattern)",
		"helpdesk.openapi.json: operation x is new since old.json",
		"a:b:c: d",
		"x.yaml:99999999999999999999:1: m",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		ps := parseProblems([]string{line}, "")
		if len(ps) != 1 || ps[0].Text != line || ps[0].Rule == "" || ps[0].Line < 0 || ps[0].Column < 0 {
			t.Fatalf("%q read as %+v", line, ps)
		}
		var b strings.Builder
		if err := writeSARIF(&b, []lintedPolicy{{Path: "p", Problems: ps}}); err != nil {
			t.Fatal(err)
		}
		var log sarifLog
		if err := json.Unmarshal([]byte(b.String()), &log); err != nil || len(log.Runs[0].Results) != 1 {
			t.Fatalf("SARIF of %q: %v\n%s", line, err, b.String())
		}
		if r := log.Runs[0].Results[0]; len(r.Locations) > 0 && r.Locations[0].PhysicalLocation.Region != nil &&
			r.Locations[0].PhysicalLocation.Region.StartLine < 1 {
			t.Fatalf("SARIF of %q has a region before line 1", line)
		}
	})
}
