package release_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/server"
)

// instruction is one Containerfile instruction: its keyword in upper case, its arguments, and
// the line it starts on.
type instruction struct {
	cmd, args string
	line      int
}

// parseContainerfile reads the instructions of a Containerfile: comment and blank lines are
// skipped, a line ending in a backslash continues on the next. It reads the subset this
// repository writes, and refuses what it cannot read rather than guess.
func parseContainerfile(data string) ([]instruction, error) {
	var out []instruction
	var cur *instruction
	for i, line := range strings.Split(data, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == nil && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur != nil && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction is dropped, as BuildKit does
		}
		cont := strings.HasSuffix(trimmed, `\`)
		trimmed = strings.TrimSuffix(trimmed, `\`)
		if cur == nil {
			cmd, args, _ := strings.Cut(trimmed, " ")
			if cmd == "" || strings.ToUpper(cmd) != cmd && strings.ToLower(cmd) != cmd {
				return nil, fmt.Errorf("line %d: %q is not an instruction", i+1, cmd)
			}
			for _, r := range cmd {
				if (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') {
					return nil, fmt.Errorf("line %d: %q is not an instruction", i+1, cmd)
				}
			}
			cur = &instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: i + 1}
		} else {
			cur.args = strings.TrimSpace(cur.args + " " + trimmed)
		}
		if !cont {
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: the instruction continues past the end of the file", cur.line)
	}
	return out, nil
}

// parseLabels reads LABEL arguments: key=value pairs separated by spaces, values bare or in
// double quotes (with \" and \\ escapes). A key given twice is refused.
func parseLabels(args string) (map[string]string, error) {
	labels := map[string]string{}
	s := args
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return labels, nil
		}
		key, rest, ok := strings.Cut(s, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \t\"") {
			return nil, fmt.Errorf("LABEL %q: not key=value", s)
		}
		var value strings.Builder
		if strings.HasPrefix(rest, `"`) {
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
				}
				value.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return nil, fmt.Errorf("LABEL %s: unterminated quote", key)
			}
			rest = rest[i+1:]
			if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
				return nil, fmt.Errorf("LABEL %s: text after the closing quote", key)
			}
		} else {
			end := strings.IndexAny(rest, " \t")
			if end < 0 {
				end = len(rest)
			}
			if strings.ContainsAny(rest[:end], `"\`) {
				return nil, fmt.Errorf("LABEL %s: quotes inside a bare value", key)
			}
			value.WriteString(rest[:end])
			rest = rest[end:]
		}
		if _, dup := labels[key]; dup {
			return nil, fmt.Errorf("LABEL %s given twice", key)
		}
		labels[key] = value.String()
		s = rest
	}
}

// FuzzContainerfile: the readers never panic, and what they read is well-formed.
func FuzzContainerfile(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join("..", "..", "Containerfile")); err == nil {
		f.Add(string(data))
	}
	for _, s := range []string{"FROM scratch\n", "LABEL a=b c=\"d e\" \\\n  f=\"g\\\"h\"\n", "RUN x \\", "LABEL a=\"b", "# c\n\n", "from x\nCopy y z\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		ins, err := parseContainerfile(data)
		if err != nil {
			return
		}
		for _, in := range ins {
			if in.cmd == "" || in.cmd != strings.ToUpper(in.cmd) || in.line < 1 {
				t.Errorf("instruction %+v", in)
			}
			if in.cmd == "LABEL" {
				labels, err := parseLabels(in.args)
				if err == nil {
					for k := range labels {
						if k == "" || strings.ContainsAny(k, " \t\"=") {
							t.Errorf("label key %q", k)
						}
					}
				}
			}
		}
	})
}

func TestParseLabels(t *testing.T) {
	got, err := parseLabels(`a=b  c="d e" f="g\"h\\i" j=""`)
	want := map[string]string{"a": "b", "c": "d e", "f": `g"h\i`, "j": ""}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parseLabels = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{`a`, `=b`, `a="b`, `a="b"c`, `a=b"c`, `a=1 a=2`} {
		if got, err := parseLabels(bad); err == nil {
			t.Errorf("parseLabels(%q) = %v, want an error", bad, got)
		}
	}
}

var (
	digestPinned = regexp.MustCompile(`^([a-z0-9.\-/]+)(:[A-Za-z0-9._\-]+)?@sha256:[0-9a-f]{64}$`)
	numericUser  = regexp.MustCompile(`^([0-9]+):([0-9]+)$`)
)

// TestContainerfile checks the image definition's facts: one stage, its base distroless static
// pinned by digest; the agentauthz binary the only thing added, from the release's build
// context; a numeric non-root user; the OCI labels, the licence the LICENSE file's; the binary as
// the entrypoint; the ports agentauthz listens on by default.
func TestContainerfile(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	ins, err := parseContainerfile(string(data))
	if err != nil {
		t.Fatalf("Containerfile: %v", err)
	}
	by := map[string][]instruction{}
	for _, in := range ins {
		by[in.cmd] = append(by[in.cmd], in)
	}
	for cmd := range by {
		switch cmd {
		case "FROM", "LABEL", "ARG", "COPY", "USER", "EXPOSE", "ENTRYPOINT":
		default:
			t.Errorf("Containerfile uses %s; the image holds only the binary, so nothing needs it", cmd)
		}
	}

	if len(by["FROM"]) != 1 {
		t.Fatalf("%d FROM instructions, want one stage", len(by["FROM"]))
	}
	base := by["FROM"][0].args
	m := digestPinned.FindStringSubmatch(base)
	if m == nil {
		t.Fatalf("FROM %s is not pinned by digest (IMAGE[:TAG]@sha256:...)", base)
	}
	if !strings.HasPrefix(m[1], "gcr.io/distroless/static") {
		t.Errorf("base image %s, want distroless static", m[1])
	}

	labels := map[string]string{}
	for _, in := range by["LABEL"] {
		l, err := parseLabels(in.args)
		if err != nil {
			t.Fatalf("line %d: %v", in.line, err)
		}
		for k, v := range l {
			labels[k] = v
		}
	}
	for _, k := range []string{"title", "description", "url", "source", "documentation", "licenses", "base.name"} {
		if labels["org.opencontainers.image."+k] == "" {
			t.Errorf("no org.opencontainers.image.%s label", k)
		}
	}
	if labels["org.opencontainers.image.title"] != "agentauthz" {
		t.Errorf("title label %q", labels["org.opencontainers.image.title"])
	}
	if got := labels["org.opencontainers.image.base.name"]; got != m[1]+m[2] {
		t.Errorf("base.name label %q, want the FROM image %q", got, m[1]+m[2])
	}
	license, err := os.ReadFile(filepath.Join(root, "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	if labels["org.opencontainers.image.licenses"] != "Apache-2.0" || !strings.HasPrefix(strings.Join(strings.Fields(string(license)), " "), "Apache License Version 2.0, January 2004") {
		t.Errorf("licenses label %q does not match LICENSE", labels["org.opencontainers.image.licenses"])
	}

	if len(by["COPY"]) != 1 {
		t.Fatalf("%d COPY instructions, want one: the binary", len(by["COPY"]))
	}
	cp := by["COPY"][0]
	var srcDst []string
	for _, f := range strings.Fields(cp.args) {
		switch {
		case f == "--chmod=0555":
		case strings.HasPrefix(f, "--"):
			t.Errorf("COPY %s: unexpected flag %s", cp.args, f)
		default:
			srcDst = append(srcDst, f)
		}
	}
	if len(srcDst) != 2 || srcDst[0] != "${TARGETPLATFORM}/agentauthz" || srcDst[1] != "/agentauthz" {
		t.Errorf("COPY %s, want the release's binary for the platform, ${TARGETPLATFORM}/agentauthz, to /agentauthz", cp.args)
	}
	if len(by["ARG"]) != 1 || by["ARG"][0].args != "TARGETPLATFORM" || by["ARG"][0].line > cp.line {
		t.Errorf("ARG TARGETPLATFORM must come before the COPY that uses it: %+v", by["ARG"])
	}

	users := by["USER"]
	if len(users) == 0 {
		t.Fatal("no USER: the image would run as root")
	}
	u := numericUser.FindStringSubmatch(users[len(users)-1].args)
	if u == nil {
		t.Fatalf("USER %s, want numeric uid:gid (runAsNonRoot can check only a number)", users[len(users)-1].args)
	}
	for _, id := range u[1:] {
		if n, _ := strconv.Atoi(id); n == 0 {
			t.Errorf("USER %s runs as root", users[len(users)-1].args)
		}
	}

	if len(by["ENTRYPOINT"]) != 1 {
		t.Fatalf("%d ENTRYPOINT instructions, want one", len(by["ENTRYPOINT"]))
	}
	var entry []string
	if err := json.Unmarshal([]byte(by["ENTRYPOINT"][0].args), &entry); err != nil || len(entry) != 1 || entry[0] != "/agentauthz" {
		t.Errorf("ENTRYPOINT %s, want the exec form [\"/agentauthz\"]", by["ENTRYPOINT"][0].args)
	}

	var ports []string
	for _, addr := range []string{server.DefaultGRPCAddr, server.DefaultHTTPAddr} {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, port)
	}
	if len(by["EXPOSE"]) != 1 || by["EXPOSE"][0].args != strings.Join(ports, " ") {
		t.Errorf("EXPOSE %+v, want agentauthz's default ports %v", by["EXPOSE"], ports)
	}
}

// TestParseContainerfile: continuation lines join, comments go, and what cannot be read is an
// error.
func TestParseContainerfile(t *testing.T) {
	ins, err := parseContainerfile("# syntax=x\nFROM a\n\nLABEL a=b \\\n  # inside\n  c=d\nCOPY x y\n")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(ins)
	if want := "[{FROM a 2} {LABEL a=b c=d 4} {COPY x y 7}]"; got != want {
		t.Errorf("parseContainerfile = %s, want %s", got, want)
	}
	for _, bad := range []string{"FROM a \\", "Fr0m a\n", "FrOm a\n"} {
		if _, err := parseContainerfile(bad); err == nil {
			t.Errorf("parseContainerfile(%q) succeeded", bad)
		}
	}
	if ins, err := parseContainerfile(""); err != nil || len(ins) != 0 {
		t.Errorf("an empty file: %v, %v", ins, err)
	}
}
