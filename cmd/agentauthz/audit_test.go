package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/audit"
)

// auditLog writes n decisions to a new log file chained from from ("" for genesis) and returns
// its path and head.
func auditLog(t *testing.T, name string, n int, from audit.Head) (string, audit.Head) {
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
	path, head := auditLog(t, "audit.log", 3, audit.Head{})
	r := cli(t, "audit", "verify", "--head", strings.ToUpper(head.String()), path)
	r.want(t, exitOK)
	if want := fmt.Sprintf("%s: ok, 3 records, head %s\nhead %s: held, %s line 3\n", path, head, head, path); r.stdout != want || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q; want %q", r.stdout, r.stderr, want)
	}
}

func TestAuditVerifyTampered(t *testing.T) {
	path, head := auditLog(t, "audit.log", 4, audit.Head{})
	b, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(b), "\n")
	os.WriteFile(path, []byte(lines[0]+lines[2]+lines[3]), 0o600) // line 2 removed
	r := cli(t, "audit", "verify", path)
	r.want(t, exitTampered)
	oneLine(t, "stdout", r.stdout)
	if want := path + ": line 2: out of chain: its prev is not the hash of line 1"; !strings.HasPrefix(r.stdout, want) || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q; want %q...", r.stdout, r.stderr, want)
	}

	os.WriteFile(path, []byte(lines[0]+strings.Replace(lines[1], "deny", "allow", 1)+lines[2]+lines[3]), 0o600)
	r = cli(t, "audit", "verify", path)
	r.want(t, exitTampered)
	if want := path + ": line 2: altered: its hash does not match its content\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}

	// The last line removed: only --head reveals it.
	os.WriteFile(path, []byte(lines[0]+lines[1]+lines[2]), 0o600)
	cli(t, "audit", "verify", path).want(t, exitOK)
	r = cli(t, "audit", "verify", "--head", head.String(), path)
	r.want(t, exitTampered)
	if want := path + ": line 4: head mismatch: the log ends before the expected head"; !strings.HasPrefix(r.stdout, want) {
		t.Errorf("stdout %q, want %q...", r.stdout, want)
	}
}

// Rotated files are one chain: each starts where the previous one ends.
func TestAuditVerifyRotated(t *testing.T) {
	first, h1 := auditLog(t, "1.log", 2, audit.Head{})
	second, h2 := auditLog(t, "2.log", 3, h1)
	r := cli(t, "audit", "verify", "--head", h2.String(), "--head", h1.Hash, first, second)
	r.want(t, exitOK)
	if want := fmt.Sprintf("%s: ok, 2 records, head %s\n%s: ok, 3 records, head %s\nhead %s: held, %s line 3\nhead %s: held, %s line 2\n",
		first, h1, second, h2, h2, second, audit.Head{Hash: h1.Hash}, first); r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	cli(t, "audit", "verify", "--from", h1.String(), second).want(t, exitOK)
	cli(t, "audit", "verify", "--from", h1.Hash, second).want(t, exitOK)

	r = cli(t, "audit", "verify", second) // its start is not genesis
	r.want(t, exitTampered)
	if !strings.HasPrefix(r.stdout, second+": line 1: out of chain: its prev is not the genesis hash") {
		t.Errorf("stdout %q", r.stdout)
	}
	r = cli(t, "audit", "verify", second, first, second) // out of order
	r.want(t, exitTampered)
	if want := second + ": line 1: out of chain"; !strings.HasPrefix(r.stdout, want) ||
		!strings.HasSuffix(r.stdout, "\n"+first+": not checked: it cannot be linked to "+second+", which did not verify\n"+second+": not checked: it cannot be linked to "+second+", which did not verify\n") {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestAuditVerifyUsage(t *testing.T) {
	path, _ := auditLog(t, "audit.log", 1, audit.Head{})
	missing := filepath.Join(t.TempDir(), "missing.log")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit"}, "agentauthz audit: name a subcommand"},
		{[]string{"audit", "prove"}, `agentauthz audit: unknown subcommand "prove"`},
		{[]string{"audit", "verify"}, "agentauthz audit verify: name at least one audit log file"},
		{[]string{"audit", "verify", "--tail", path}, "agentauthz audit verify: unknown flag --tail"},
		{[]string{"audit", "verify", "--head", "abc", path}, `agentauthz audit verify: --head "abc": want SEQ:HASH, a SHA-256 hash (64 hex digits) or a sequence number`},
		{[]string{"audit", "verify", "--from", strings.Repeat("g", 64), path}, "agentauthz audit verify: --from \"ggg"},
	} {
		r := cli(t, tc.args...)
		r.want(t, exitUsage)
		oneLine(t, "stderr of "+strings.Join(tc.args, " "), r.stderr)
		if !strings.HasPrefix(r.stderr, tc.want) {
			t.Errorf("%s: stderr %q, want %q...", strings.Join(tc.args, " "), r.stderr, tc.want)
		}
	}
	// Files that cannot be read: an error, not a usage mistake.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit", "verify", missing}, "agentauthz audit verify: open " + missing + ": no such file or directory"},
		{[]string{"audit", "verify", t.TempDir()}, "agentauthz audit verify: read "},
	} {
		r := cli(t, tc.args...)
		r.want(t, exitError)
		oneLine(t, "stderr of "+strings.Join(tc.args, " "), r.stderr)
		if !strings.HasPrefix(r.stderr, tc.want) {
			t.Errorf("%s: stderr %q, want %q...", strings.Join(tc.args, " "), r.stderr, tc.want)
		}
	}
	// An unreadable file: exit 1, and the files after it cannot be linked to it.
	r := cli(t, "audit", "verify", missing, path)
	r.want(t, exitError)
	if r.stdout != path+": not checked: it cannot be linked to "+missing+", which did not verify\n" {
		t.Errorf("stdout %q", r.stdout)
	}

	r = cli(t, "audit", "--help")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "\n  verify ") {
		t.Errorf("help: %q", r.stdout)
	}
	r = cli(t, "audit", "verify", "--help")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "agentauthz audit verify [--key FILE] [--from HEAD] [--head HEAD]... FILE...\n") {
		t.Errorf("help: %q", r.stdout)
	}
	r = cli(t, "audit", "verify", "-h")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "--head HEAD") {
		t.Errorf("verify -h: %q", r.stdout)
	}
}

// A keyed log rotated across files verifies as one chain with its key and against heads exported
// while it was written; records cut from its end, a file left out, or a missing key are caught.
func TestAuditVerifyKeyedRotated(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("verify-test-key-0123456789abcdef0123\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	key, err := audit.ReadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "decisions.log")
	l, err := audit.Open(path, audit.Options{Key: key, Rotate: audit.Rotation{Size: 1500}})
	if err != nil {
		t.Fatal(err)
	}
	var heads []string
	for i := range 30 {
		if err := l.Decision(audit.Decision{ID: fmt.Sprint("d", i), Outcome: "allow", Code: "allowed", Status: 200}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			heads = append(heads, l.Head().String())
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(path + ".*") // name order is chain order
	files = append(files, path)
	if len(files) < 3 {
		t.Fatalf("%d files: no rotation", len(files))
	}
	args := func(extra ...string) []string {
		a := []string{"audit", "verify", "--key", keyFile}
		for _, h := range heads {
			a = append(a, "--head", h)
		}
		return append(append(a, extra...), files...)
	}
	r := cli(t, args()...)
	r.want(t, exitOK)
	for _, h := range heads {
		if !strings.Contains(r.stdout, "head "+h+": held, ") {
			t.Errorf("stdout does not place head %s:\n%s", h, r.stdout)
		}
	}
	r = cli(t, append([]string{"audit", "verify"}, files...)...)
	r.want(t, exitUsage)
	if !strings.Contains(r.stderr, "the log is keyed (hmac): give its key with --key FILE") {
		t.Errorf("without --key: stderr %q", r.stderr)
	}
	// The last record cut: the chain is valid, but the last exported head is gone.
	b, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(b), "\n")
	os.WriteFile(path, []byte(strings.Join(lines[:len(lines)-2], "")), 0o600)
	cli(t, append([]string{"audit", "verify", "--key", keyFile}, files...)...).want(t, exitOK)
	r = cli(t, args()...)
	r.want(t, exitTampered)
	if !strings.Contains(r.stdout, path+": line ") || !strings.Contains(r.stdout, "head mismatch: the log ends before the expected head at seq 30") {
		t.Errorf("cut log: stdout %q", r.stdout)
	}
	os.WriteFile(path, b, 0o600)
	// A rotated file left out.
	r = cli(t, append([]string{"audit", "verify", "--key", keyFile}, slices.Delete(slices.Clone(files), 1, 2)...)...)
	r.want(t, exitTampered)
	if !strings.Contains(r.stdout, files[2]+": line 1: out of chain") {
		t.Errorf("a file left out: stdout %q", r.stdout)
	}
}
