package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/agentauthz/agentauthz/policy/openapi"
)

// StarterOptions say what OpenAPIStarter cannot read from the document.
type StarterOptions struct {
	// Document is the document's path relative to the policy file, e.g. "helpdesk.openapi.json".
	Document string
	// Host is the host agents address; default: the host of the document's first server.
	Host string
	// TrustDomain is the agents' SPIFFE trust domain; default "example.org".
	TrustDomain string
}

// OpenAPIStarter writes a starting policy for an OpenAPI document: one host whose openapi lists
// every operation the document describes with a suggested scope (from its first tag, or first
// path segment, and its method: tickets:read, tickets:write, tickets:delete), and no agent, so
// nothing is granted. An operation that cannot be a route is listed in a comment saying why.
// The policy loads without problems, as the policy file f (whose FS holds the document): that
// is checked before it is returned.
func OpenAPIStarter(f File, opts StarterOptions) ([]byte, error) {
	if f.FS == nil {
		return nil, errors.New("policy: the starting policy needs a directory to read the document from")
	}
	doc, err := openapi.Read(opts.Document, path.Dir(f.Name), func(n string) ([]byte, error) {
		if !fs.ValidPath(n) {
			return nil, fmt.Errorf("%q is not a path inside the policy directory", n)
		}
		return fs.ReadFile(f.FS, path.Join(f.FSDir, n))
	})
	if err != nil {
		return nil, err
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = "example.org"
	}
	if opts.Host == "" {
		opts.Host = doc.ServerHost
	}
	if opts.Host == "" {
		opts.Host = "api.example.internal"
	}
	// Leave out, with the reason, every operation whose route the policy refuses, until it loads.
	left := map[*openapi.Operation]string{}
	for {
		out := starterYAML(doc, opts, left)
		f.Data = out
		_, err := Load([]File{f}, Options{Secrets: Placeholders})
		if err == nil {
			return out, nil
		}
		var problems Problems
		if !errors.As(err, &problems) {
			return nil, err
		}
		progress := false
		for _, p := range problems {
			for _, op := range doc.Operations {
				if _, done := left[op]; done || !mentions(p, op) {
					continue
				}
				left[op] = problemText(p)
				progress = true
			}
		}
		if !progress {
			return nil, fmt.Errorf("policy: the starting policy does not load: %w", problems)
		}
	}
}

// mentions reports whether a problem is about an operation.
func mentions(problem string, op *openapi.Operation) bool {
	if strings.HasPrefix(problem, op.At+":") {
		return true
	}
	return op.ID != "" && (strings.Contains(problem, "operation "+op.ID+" ") || strings.Contains(problem, "operation "+op.ID+":") ||
		strings.Contains(problem, "(operation "+op.ID+")"))
}

// problemText is a problem without its position, on one line.
func problemText(p string) string {
	if i := strings.Index(p, ": "); i >= 0 && strings.Count(p[:i], ":") >= 1 {
		p = p[i+2:]
	}
	return strings.Join(strings.Fields(p), " ")
}

// positionPrefix is the "file:line:col: " a problem starts with.
var positionPrefix = regexp.MustCompile(`^\S+:[0-9]+:[0-9]+: `)

var scopeWord = regexp.MustCompile(`[^a-z0-9._/-]+`)

// suggestScope names a scope for an operation from its first tag, or its first path segment
// that is not a version, and its method.
func suggestScope(op *openapi.Operation) string {
	noun := ""
	if len(op.Tags) > 0 {
		noun = op.Tags[0]
	}
	if noun == "" {
		for _, seg := range strings.Split(op.Path, "/") {
			if seg != "" && !strings.HasPrefix(seg, "{") && !regexp.MustCompile(`^v[0-9]+$`).MatchString(seg) {
				noun = seg
				break
			}
		}
	}
	noun = strings.Trim(scopeWord.ReplaceAllString(strings.ToLower(noun), "-"), "-._/")
	if noun == "" {
		noun = "api"
	}
	if len(noun) > 100 {
		noun = noun[:100]
	}
	verb := "write"
	switch op.Method {
	case "GET", "HEAD", "OPTIONS":
		verb = "read"
	case "DELETE":
		verb = "delete"
	}
	return noun + ":" + verb
}

// starterYAML writes the starting policy, leaving out the operations in left.
func starterYAML(doc *openapi.Document, opts StarterOptions, left map[*openapi.Operation]string) []byte {
	var b strings.Builder
	title := doc.Title
	if title == "" {
		title = "the API"
	}
	fmt.Fprintf(&b, "# A starting policy for %s (%s), written by agentauthz openapi init.\n", oneLine(title), opts.Document)
	b.WriteString("# It grants nothing: no agent holds any scope below. Add agents with the scopes they need,\n")
	b.WriteString("# tighten the operations they call (params, query, body, approval), and delete the others.\n\n")
	fmt.Fprintf(&b, "trust_domains:\n  - %s\n\n", strconv.Quote(opts.TrustDomain))
	fmt.Fprintf(&b, "# agents:\n#   - id: spiffe://%s/agent/NAME\n#     scopes: [SCOPE, ...]\n\n", opts.TrustDomain)
	fmt.Fprintf(&b, "hosts:\n  - name: %s\n    openapi:\n      document: %s\n", strconv.Quote(opts.Host), strconv.Quote(opts.Document))
	if doc.ServerPathProblem != "" {
		fmt.Fprintf(&b, "      # %s\n      base_path: \"\"\n", oneLine(doc.ServerPathProblem))
	}
	marked := false
	for _, op := range doc.Operations {
		if _, out := left[op]; !out && op.Approval != nil && op.Problem == "" && op.ID != "" {
			marked = true
		}
	}
	if marked {
		b.WriteString("      # The document marks some operations x-agentauthz-approval: hold them for these approvers.\n")
		b.WriteString("      approval_extension:\n        approvers: [\"group:approvers\"]\n")
	}
	b.WriteString("      operations:\n")
	names := map[string]bool{}
	shapes := map[string]bool{}
	listed := 0
	for _, op := range doc.Operations {
		what := op.Method + " " + op.Path
		if op.Summary != "" {
			what += ": " + oneLine(op.Summary)
		}
		why := left[op]
		switch {
		case why != "":
		case op.Problem != "":
			why = positionPrefix.ReplaceAllString(op.Problem, "")
		case op.ID == "":
			why = "it has no operationId: give it one to grant it"
		}
		shape := op.Method + " " + templateShape(doc.ServerPath+op.Path)
		if why == "" && shapes[shape] {
			why = "another operation has the same method and path shape"
		}
		if why != "" {
			fmt.Fprintf(&b, "        # %s cannot be a route: %s\n", what, oneLine(why))
			continue
		}
		shapes[shape] = true
		fmt.Fprintf(&b, "        - id: %s   # %s\n", strconv.Quote(op.ID), what)
		name, ok := RouteName(op.ID)
		if !ok || names[name] {
			name = uniqueRoute(names, fmt.Sprintf("op-%d", listed+1))
			fmt.Fprintf(&b, "          route: %s\n", name)
		}
		names[name] = true
		fmt.Fprintf(&b, "          scope: %s\n", suggestScope(op))
		listed++
	}
	if listed == 0 {
		b.WriteString("        []\n")
	}
	return []byte(b.String())
}

func uniqueRoute(names map[string]bool, name string) string {
	for i := 2; names[name]; i++ {
		name = fmt.Sprintf("%s-%d", strings.TrimSuffix(name, "-"+strconv.Itoa(i-1)), i)
	}
	return name
}

// templateShape replaces each {parameter} of a template by {}.
func templateShape(t string) string {
	parts := strings.Split(t, "/")
	for i, p := range parts {
		if isParamSegment(p) {
			parts[i] = "{}"
		}
	}
	return strings.Join(parts, "/")
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = clip(s, 200)
	}
	return s
}
