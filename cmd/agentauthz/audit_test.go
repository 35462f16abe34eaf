package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/audit"
)

// auditLog writes n decisions to a new log file chained from from ("" for genesis) and returns
// its path and head.
func auditLog(t *testing.T, name string, n int, from string) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	l, err := audit.Open(path, audit.Options{From: from})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Decision(audit.Decision{ID: fmt.Sprint(name, i), Outcome: "deny", Code: "route_unknown", Status: 403}); err != nil {
			t.Fatal(err)
		}
	}
	head := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path, head
}

func TestAuditVerifyOK(t *testing.T) {
	path, head := auditLog(t, "audit.log", 3, "")
	r := cli(t, "audit", "verify", "--head", strings.ToUpper(head), path)
	r.want(t, exitOK)
	if want := fmt.Sprintf("%s: ok, 3 records, head %s\n", path, head); r.stdout != want || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q; want %q", r.stdout, r.stderr, want)
	}
}

func TestAuditVerifyTampered(t *testing.T) {
	path, head := auditLog(t, "audit.log", 4, "")
	b, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(b), "\n")
	os.WriteFile(path, []byte(lines[0]+lines[2]+lines[3]), 0o600) // line 2 removed
	r := cli(t, "audit", "verify", path)
	r.want(t, exitDeny)
	oneLine(t, "stdout", r.stdout)
	if want := path + ": line 2: out of chain: its prev is not the hash of line 1"; !strings.HasPrefix(r.stdout, want) || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q; want %q...", r.stdout, r.stderr, want)
	}

	os.WriteFile(path, []byte(lines[0]+strings.Replace(lines[1], "deny", "allow", 1)+lines[2]+lines[3]), 0o600)
	r = cli(t, "audit", "verify", path)
	r.want(t, exitDeny)
	if want := path + ": line 2: altered: its hash does not match its content\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}

	// The last line removed: only --head reveals it.
	os.WriteFile(path, []byte(lines[0]+lines[1]+lines[2]), 0o600)
	cli(t, "audit", "verify", path).want(t, exitOK)
	r = cli(t, "audit", "verify", "--head", head, path)
	r.want(t, exitDeny)
	if want := path + ": line 4: head mismatch: the log ends before the expected head"; !strings.HasPrefix(r.stdout, want) {
		t.Errorf("stdout %q, want %q...", r.stdout, want)
	}
}

// Rotated files are one chain: each starts where the previous one ends.
func TestAuditVerifyRotated(t *testing.T) {
	first, h1 := auditLog(t, "1.log", 2, "")
	second, h2 := auditLog(t, "2.log", 3, h1)
	r := cli(t, "audit", "verify", "--head", h2, first, second)
	r.want(t, exitOK)
	if want := fmt.Sprintf("%s: ok, 2 records, head %s\n%s: ok, 3 records, head %s\n", first, h1, second, h2); r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	cli(t, "audit", "verify", "--from", h1, second).want(t, exitOK)

	r = cli(t, "audit", "verify", second) // its start is not genesis
	r.want(t, exitDeny)
	if !strings.HasPrefix(r.stdout, second+": line 1: out of chain: its prev is not the genesis hash") {
		t.Errorf("stdout %q", r.stdout)
	}
	r = cli(t, "audit", "verify", second, first, second) // out of order
	r.want(t, exitDeny)
	if want := second + ": line 1: out of chain"; !strings.HasPrefix(r.stdout, want) ||
		!strings.HasSuffix(r.stdout, "\n"+first+": not checked: it cannot be linked to "+second+", which did not verify\n"+second+": not checked: it cannot be linked to "+second+", which did not verify\n") {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestAuditVerifyUsage(t *testing.T) {
	path, _ := auditLog(t, "audit.log", 1, "")
	missing := filepath.Join(t.TempDir(), "missing.log")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit"}, "agentauthz audit: name a subcommand"},
		{[]string{"audit", "prove"}, `agentauthz audit: unknown subcommand "prove"`},
		{[]string{"audit", "verify"}, "agentauthz audit verify: name at least one audit log file"},
		{[]string{"audit", "verify", "--tail", path}, "agentauthz audit verify: flag provided but not defined: -tail"},
		{[]string{"audit", "verify", "--head", "abc", path}, `agentauthz audit verify: invalid value "abc" for flag -head: want a SHA-256 hash, 64 hex digits`},
		{[]string{"audit", "verify", "--from", strings.Repeat("g", 64), path}, "agentauthz audit verify: invalid value"},
		{[]string{"audit", "verify", missing}, "agentauthz audit verify: open " + missing + ": no such file or directory"},
		{[]string{"audit", "verify", t.TempDir()}, "agentauthz audit verify: read "},
	} {
		r := cli(t, tc.args...)
		r.want(t, exitUsage)
		oneLine(t, "stderr of "+strings.Join(tc.args, " "), r.stderr)
		if !strings.HasPrefix(r.stderr, tc.want) {
			t.Errorf("%s: stderr %q, want %q...", strings.Join(tc.args, " "), r.stderr, tc.want)
		}
	}
	// An unreadable file: exit 2, and the files after it cannot be linked to it.
	r := cli(t, "audit", "verify", missing, path)
	r.want(t, exitUsage)
	if r.stdout != path+": not checked: it cannot be linked to "+missing+", which did not verify\n" {
		t.Errorf("stdout %q", r.stdout)
	}

	r = cli(t, "audit", "--help")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "agentauthz audit verify [--from HASH] [--head HASH] FILE...") {
		t.Errorf("help: %q", r.stdout)
	}
	r = cli(t, "audit", "verify", "-h")
	r.want(t, exitOK)
	if !strings.Contains(r.stderr, "-head HASH") {
		t.Errorf("verify -h: %q", r.stderr)
	}
}
