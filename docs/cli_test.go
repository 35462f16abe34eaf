package docs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// cliFile is the command-line reference. Its ```console blocks run as the guide's do (in the
// guide's directory of policies and requests), and a "$ echo $?" after a command must print the
// command's exit status.
const cliFile = "cli.md"

func TestCLICommands(t *testing.T) {
	bin := buildCommand(t)
	dir := guideWorkDir(t, readBlocks(t, guideFile))
	ran, statuses := 0, 0
	for _, b := range readBlocks(t, cliFile) {
		if b.lang != "console" {
			continue
		}
		last := -1
		for _, c := range parseConsole(b) {
			args, err := shellWords(c.command)
			if err != nil {
				t.Errorf("%s:%d: %v", cliFile, c.line, err)
				continue
			}
			if c.command == "echo $?" {
				if last < 0 {
					t.Errorf("%s:%d: echo $? follows no agentauthz command", cliFile, c.line)
					continue
				}
				statuses++
				if got := strconv.Itoa(last) + "\n"; got != c.output {
					t.Errorf("%s:%d: the command before exits with status %d; the reference shows %q", cliFile, c.line, last, c.output)
				}
				continue
			}
			if len(args) == 0 || args[0] != "agentauthz" {
				t.Errorf("%s:%d: %q is neither agentauthz nor echo $?", cliFile, c.line, c.command)
				continue
			}
			cmd := exec.Command(bin, args[1:]...)
			cmd.Dir = dir
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			last = 0
			if err := cmd.Run(); err != nil {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatalf("%s:%d: %v", cliFile, c.line, err)
				}
				last = exit.ExitCode()
			}
			ran++
			if got := out.String(); got != c.output {
				t.Errorf("%s:%d: the command prints something else than the reference shows.\nreference:\n%s\nprinted:\n%s",
					cliFile, c.line, c.output, got)
			}
		}
	}
	if ran == 0 || statuses == 0 {
		t.Fatalf("%s shows %d agentauthz commands and %d exit statuses", cliFile, ran, statuses)
	}
}

// TestCLIExitTable: the reference's table of exit statuses lists each status once, in order.
func TestCLIExitTable(t *testing.T) {
	data, err := os.ReadFile(cliFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	_, table, ok := strings.Cut(text, "\n## Exit status\n")
	if !ok {
		t.Fatalf("%s has no \"## Exit status\" section", cliFile)
	}
	want := 0
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, "## ") {
			break
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(cells[1]))
		if err != nil {
			continue // the header
		}
		if n != want {
			t.Errorf("%s: exit status %d where %d was expected", cliFile, n, want)
		}
		want = n + 1
	}
	if want != 7 {
		t.Errorf("%s lists exit statuses 0 to %d, want 0 to 6", cliFile, want-1)
	}
}
