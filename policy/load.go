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
	// Dir is the directory relative file references (secrets in files) are resolved against.
	// Empty for embedded files, which may not reference files.
	Dir  string
	Data []byte
}

// IsPolicyFile reports whether a file name in a policy directory is a policy file: YAML, and
// not a policy test file (*_test.yaml).
func IsPolicyFile(name string) bool {
	base := path.Base(filepath.ToSlash(name))
	if strings.HasPrefix(base, ".") {
		return false
	}
	ext := path.Ext(base)
	if ext != ".yaml" && ext != ".yml" {
		return false
	}
	return !strings.HasSuffix(strings.TrimSuffix(base, ext), "_test")
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
		return []File{{Name: p, Dir: filepath.Dir(p), Data: data}}, nil
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
		files = append(files, File{Name: name, Dir: p, Data: data})
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
		files = append(files, File{Name: path.Join(dir, e.Name()), Data: data})
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
		if len(structural) > 0 {
			problems = append(problems, structural...)
			continue
		}
		p := &policyv1.Policy{}
		opts := protoyaml.UnmarshalOptions{Path: f.Name, Validator: validateFunc(validator.Validate)}
		if err := opts.Unmarshal(f.Data, p); err != nil {
			problems = append(problems, splitJoined(err)...)
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
func splitJoined(err error) Problems {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return Problems{strings.TrimRight(err.Error(), "\n")}
	}
	var out Problems
	for _, e := range joined.Unwrap() {
		out = append(out, strings.TrimRight(e.Error(), "\n"))
	}
	return out
}

// revision is a short digest of every file's name and content, in name order.
func revision(files []File) string {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	h := sha256.New()
	for _, f := range sorted {
		fmt.Fprintf(h, "%d:%s\n%d:", len(f.Name), f.Name, len(f.Data))
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}
