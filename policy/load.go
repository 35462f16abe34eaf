package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"buf.build/go/protovalidate"
	"buf.build/go/protoyaml"
	"google.golang.org/protobuf/proto"

	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// File is one policy file as read from disk or an embedded tree.
type File struct {
	// Name is how problems refer to the file, e.g. "policy/helpdesk.yaml".
	Name string
	// Dir is the directory on disk that credential files given by relative path are resolved
	// against. Empty for embedded files, which may not reference credential files that way.
	Dir  string
	Data []byte
	// FS and FSDir locate the files this one refers to (JSON Schemas, GraphQL schemas, .proto
	// files): FSDir is the policy file's directory inside FS. Nil FS: it may refer to none.
	FS    fs.FS
	FSDir string
}

// IsPolicyFile reports whether a file name in a policy directory is a policy file: YAML, and
// neither a policy test file (*_test.yaml) nor an OpenAPI document (*.openapi.yaml), which
// hosts name.
func IsPolicyFile(name string) bool {
	base := path.Base(filepath.ToSlash(name))
	if strings.HasPrefix(base, ".") {
		return false
	}
	ext := path.Ext(base)
	if ext != ".yaml" && ext != ".yml" {
		return false
	}
	stem := strings.TrimSuffix(base, ext)
	return !strings.HasSuffix(stem, "_test") && !strings.HasSuffix(stem, ".openapi")
}

// ReadPath reads a policy file, or every policy file directly inside a directory.
func ReadPath(p string) ([]File, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if !st.IsDir() {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		dir := filepath.Dir(p)
		return []File{{Name: p, Dir: dir, Data: data, FS: os.DirFS(dir), FSDir: "."}}, nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var files []File
	for _, e := range entries {
		if e.IsDir() || !IsPolicyFile(e.Name()) {
			continue
		}
		name := filepath.Join(p, e.Name())
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		files = append(files, File{Name: name, Dir: p, Data: data, FS: os.DirFS(p), FSDir: "."})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("policy: %s holds no policy files (*.yaml, *.yml)", p)
	}
	return files, nil
}

// ReadFS reads the policy files directly inside dir of an fs.FS, such as an embedded tree.
func ReadFS(fsys fs.FS, dir string) ([]File, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var files []File
	for _, e := range entries {
		if e.IsDir() || !IsPolicyFile(e.Name()) {
			continue
		}
		data, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		files = append(files, File{Name: path.Join(dir, e.Name()), Data: data, FS: fsys, FSDir: dir})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("policy: %s holds no policy files", dir)
	}
	return files, nil
}

// Problems is every problem found in a policy, each on its own line with file and position.
type Problems []string

func (p Problems) Error() string {
	if len(p) == 1 {
		return p[0]
	}
	return fmt.Sprintf("%d problems:\n%s", len(p), strings.Join(p, "\n"))
}

// source is a decoded policy file with the positions of its YAML nodes.
type source struct {
	file      File
	policy    *policyv1.Policy
	positions map[string]position
}

// decode reads each file strictly: YAML syntax, duplicate keys, aliases, unknown keys, wrong
// types and every buf.validate rule. It returns every problem of every file.
func decode(files []File) ([]source, Problems) {
	validator, err := protovalidate.New()
	if err != nil {
		return nil, Problems{"policy: cannot build validator: " + err.Error()}
	}
	var problems Problems
	var out []source
	for _, f := range files {
		positions, structural := scan(f)
		if positions == nil { // not one YAML document, or aliases the decoder would misread
			problems = append(problems, structural...)
			continue
		}
		// Decode even a file with structural problems (a duplicate key, a field number), so that its
		// author sees every problem of the file at once.
		p := &policyv1.Policy{}
		opts := protoyaml.UnmarshalOptions{Path: f.Name, Validator: validateFunc(validator.Validate)}
		if err := opts.Unmarshal(f.Data, p); err != nil || len(structural) > 0 {
			if err != nil {
				structural = append(structural, splitJoined(f.Name, err)...)
			}
			problems = append(problems, sortByPosition(f.Name, structural)...)
			continue
		}
		out = append(out, source{file: f, policy: p, positions: positions})
	}
	return out, problems
}

// validateFunc adapts protovalidate's variadic Validate to protoyaml.Validator.
type validateFunc func(proto.Message, ...protovalidate.ValidationOption) error

func (f validateFunc) Validate(m proto.Message) error { return f(m) }

// splitJoined turns an errors.Join of decoding errors into one problem each.
func splitJoined(file string, err error) Problems {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return Problems{problemLine(file, err.Error())}
	}
	var out Problems
	for _, e := range joined.Unwrap() {
		out = append(out, problemLine(file, e.Error()))
	}
	return out
}

// sortByPosition puts the problems of one file in reading order: the validator visits map
// entries in random order, and the same policy must list the same problems the same way every
// time.
func sortByPosition(file string, out Problems) Problems {
	sort.SliceStable(out, func(i, j int) bool {
		li, ci := problemPos(file, out[i])
		lj, cj := problemPos(file, out[j])
		if li != lj {
			return li < lj
		}
		if ci != cj {
			return ci < cj
		}
		return out[i] < out[j]
	})
	return out
}

// problemPos reads the line and column of a problem line about file; 0, 0 if it has none.
func problemPos(file, p string) (line, col int) {
	rest, ok := strings.CutPrefix(p, file+":")
	if !ok {
		return 0, 0
	}
	l, rest, _ := strings.Cut(rest, ":")
	c, _, _ := strings.Cut(rest, ":")
	line, _ = strconv.Atoi(l)
	col, _ = strconv.Atoi(c)
	return line, col
}

// problemLine makes a decoder error one line, "file:line:col: message", like every other
// problem: protoyaml writes "file:line:col message" followed by lines quoting the source.
func problemLine(file, msg string) string {
	msg, _, _ = strings.Cut(strings.TrimRight(msg, "\n"), "\n")
	rest, ok := strings.CutPrefix(msg, file+":")
	if !ok {
		return file + ": " + msg
	}
	if pos, text, ok := strings.Cut(rest, " "); ok {
		line, col, ok := strings.Cut(pos, ":")
		if _, err := strconv.Atoi(line); err == nil && ok {
			if _, err := strconv.Atoi(col); err == nil {
				return file + ":" + pos + ": " + text
			}
		}
	}
	return msg
}

// revision is a short digest of every file's name and content: the policy files and every file
// they refer to. It depends on the content alone, not on how the policy was reached: a policy
// file counts by its base name (policy files sit directly in one directory), a file it refers to
// by its name relative to the policy's directory, so the same files read through a relative or
// an absolute path, another working directory or a symbolic link have the same revision.
func revision(files []File, refs map[string][]byte) string {
	type entry struct {
		name string
		data []byte
	}
	sorted := make([]entry, 0, len(files)+len(refs))
	for _, f := range files {
		sorted = append(sorted, entry{"policy:" + filepath.ToSlash(filepath.Base(f.Name)), f.Data})
	}
	for name, data := range refs {
		sorted = append(sorted, entry{"ref:" + name, data})
	}
	// By name, then by content: two files of one base name (given by hand from two directories)
	// still hash in one order.
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].name != sorted[j].name {
			return sorted[i].name < sorted[j].name
		}
		return string(sorted[i].data) < string(sorted[j].data)
	})
	h := sha256.New()
	for _, e := range sorted {
		fmt.Fprintf(h, "%d:%s\n%d:", len(e.name), e.name, len(e.data))
		h.Write(e.data)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}
