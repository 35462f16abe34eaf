package docs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy"
)

// guideFile is the policy-writing guide. Its examples are checked against the product:
//
//   - every ```yaml block that starts with "trust_domains:" is a whole policy, and must load;
//   - every other ```yaml block without a file name is an excerpt of a whole policy, and must
//     appear in one of them as written (indented as a whole);
//   - a block right after a line naming a file ("`policy/approval.schema.json`:") must equal
//     that file in testdata/ ("policy/" dropped), unless it is a whole policy;
//   - every "$ agentauthz ..." command in a ```console block must print what follows it, run
//     in a directory holding policy/ (the whole policies named policy/*.yaml and the files in
//     testdata/), requests/ (testdata/requests/) and approvers/ (testdata/approvers/);
//   - its table of reason codes is generated from package decision (codes_test.go).
const guideFile = "writing-policy.md"

// block is one fenced code block of a Markdown file.
type block struct {
	lang string
	line int    // line number of the block's first content line
	text string // the content, each line ending in "\n"
	file string // the file the block shows, from the line naming it; "" if none
}

var fileMarker = regexp.MustCompile("^`([^`]+)`:$")

func readBlocks(t *testing.T, name string) []block {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var blocks []block
	for i := 0; i < len(lines); i++ {
		info, ok := strings.CutPrefix(lines[i], "```")
		if !ok {
			continue
		}
		b := block{lang: strings.TrimSpace(info), line: i + 2}
		for j := i - 1; j >= 0; j-- {
			if strings.TrimSpace(lines[j]) == "" {
				continue
			}
			if m := fileMarker.FindStringSubmatch(lines[j]); m != nil {
				b.file = m[1]
			}
			break
		}
		var text strings.Builder
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			text.WriteString(lines[i] + "\n")
		}
		if i == len(lines) {
			t.Fatalf("%s:%d: code block is not closed", name, b.line-1)
		}
		b.text = text.String()
		blocks = append(blocks, b)
	}
	return blocks
}

func isWholePolicy(b block) bool {
	return b.lang == "yaml" && strings.HasPrefix(b.text, "trust_domains:")
}

// TestGuideSnippets loads every whole policy in the guide and finds every other YAML snippet
// in one of them.
func TestGuideSnippets(t *testing.T) {
	blocks := readBlocks(t, guideFile)
	var whole []block
	for _, b := range blocks {
		if !isWholePolicy(b) {
			continue
		}
		whole = append(whole, b)
		// Blank lines in front keep the line numbers of problems those of the guide.
		f := policy.File{
			Name:  guideFile,
			Dir:   "testdata",
			Data:  []byte(strings.Repeat("\n", b.line-1) + b.text),
			FS:    os.DirFS("testdata"),
			FSDir: ".",
		}
		if _, err := policy.Load([]policy.File{f}, policy.Options{Secrets: policy.Placeholders}); err != nil {
			t.Errorf("the policy at %s:%d does not load:\n%v", guideFile, b.line, err)
		}
	}
	if len(whole) == 0 {
		t.Fatalf("%s shows no whole policy", guideFile)
	}
	for _, b := range blocks {
		if b.lang != "yaml" || b.file != "" || isWholePolicy(b) {
			continue
		}
		if !excerptOfAny(b.text, whole) {
			t.Errorf("the YAML at %s:%d is not an excerpt of any whole policy in the guide: make it one, so that it is tested", guideFile, b.line)
		}
	}
}

// excerptOfAny reports whether the lines of snippet appear, in order and together, in one of
// the policies, each line indented by the same amount more than in the snippet.
func excerptOfAny(snippet string, policies []block) bool {
	frag := strings.Split(strings.TrimRight(snippet, "\n"), "\n")
	for _, p := range policies {
		lines := strings.Split(p.text, "\n")
		for i := range lines {
			indent, ok := strings.CutSuffix(lines[i], frag[0])
			if !ok || strings.Trim(indent, " ") != "" || i+len(frag) > len(lines) {
				continue
			}
			match := true
			for j, fl := range frag {
				if pl := lines[i+j]; pl != indent+fl && !(fl == "" && pl == "") {
					match = false
					break
				}
			}
			if match {
				return true
			}
		}
	}
	return false
}

// TestGuideFiles compares the files the guide shows with the ones its policies are tested with.
func TestGuideFiles(t *testing.T) {
	for _, b := range readBlocks(t, guideFile) {
		if b.file == "" || isWholePolicy(b) {
			continue
		}
		path := filepath.Join("testdata", filepath.FromSlash(strings.TrimPrefix(b.file, "policy/")))
		data, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s:%d shows %s: %v", guideFile, b.line, b.file, err)
			continue
		}
		if string(data) != b.text {
			t.Errorf("%s:%d shows %s, which differs from %s", guideFile, b.line, b.file, path)
		}
	}
}

// TestGuideCommands runs every agentauthz command the guide shows and compares what it prints.
func TestGuideCommands(t *testing.T) {
	blocks := readBlocks(t, guideFile)
	bin := buildCommand(t)
	dir := guideWorkDir(t, blocks)
	ran := 0
	for _, b := range blocks {
		if b.lang != "console" {
			continue
		}
		for _, c := range parseConsole(b) {
			args, err := shellWords(c.command)
			if err != nil {
				t.Errorf("%s:%d: %v", guideFile, c.line, err)
				continue
			}
			if len(args) == 0 || args[0] != "agentauthz" {
				continue // not ours to run
			}
			cmd := exec.Command(bin, args[1:]...)
			cmd.Dir = dir
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatalf("%s:%d: %v", guideFile, c.line, err)
				}
			}
			ran++
			if got := out.String(); got != c.output {
				t.Errorf("%s:%d: the command prints something else than the guide shows.\nguide:\n%s\nprinted:\n%s",
					guideFile, c.line, c.output, got)
			}
		}
	}
	if ran == 0 {
		t.Fatalf("%s shows no agentauthz command", guideFile)
	}
}

// buildCommand builds cmd/agentauthz into a temporary directory.
func buildCommand(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build agentauthz: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "agentauthz")
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/agentauthz")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/agentauthz: %v\n%s", err, out)
	}
	return bin
}

// guideWorkDir lays out the directory the guide's commands run in.
func guideWorkDir(t *testing.T, blocks []block) string {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"policy", "requests", "approvers"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFiles(t, "testdata", filepath.Join(dir, "policy"))
	copyFiles(t, filepath.Join("testdata", "requests"), filepath.Join(dir, "requests"))
	copyFiles(t, filepath.Join("testdata", "approvers"), filepath.Join(dir, "approvers"))
	for _, b := range blocks {
		name, ok := strings.CutPrefix(b.file, "policy/")
		if !ok || !isWholePolicy(b) {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "policy", name), []byte(b.text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// copyFiles copies the regular files directly inside from into to.
func copyFiles(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// consoleCommand is one "$ command" of a console block and the output shown after it.
type consoleCommand struct {
	line    int
	command string
	output  string
}

func parseConsole(b block) []consoleCommand {
	var out []consoleCommand
	lines := strings.Split(strings.TrimSuffix(b.text, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		cmd, ok := strings.CutPrefix(lines[i], "$ ")
		if !ok {
			continue
		}
		c := consoleCommand{line: b.line + i}
		for strings.HasSuffix(cmd, `\`) && i+1 < len(lines) {
			i++
			cmd += "\n" + lines[i]
		}
		c.command = cmd
		var output strings.Builder
		for i+1 < len(lines) && !strings.HasPrefix(lines[i+1], "$ ") {
			i++
			output.WriteString(lines[i] + "\n")
		}
		c.output = output.String()
		out = append(out, c)
	}
	return out
}

// shellWords splits a command line as a POSIX shell would, for the quoting the guide uses:
// single quotes, double quotes with backslash escapes, backslashes and line continuations.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s) && s[i+1] == '\n':
			i++
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unclosed ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			inWord = true
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, fmt.Errorf("unclosed \" in %q", s)
			}
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
