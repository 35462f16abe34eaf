package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/agentauthz/agentauthz/policy"
)

const openAPILong = `A starting policy, or the routes, from an OpenAPI document.

  agentauthz openapi init [--out FILE] [--host NAME] [--trust-domain TD] SPEC
      write a starting policy granting nothing for an OpenAPI document
  agentauthz openapi routes [--host NAME] SPEC
      print the routes the document's operations compile into
`

// starter writes the starting policy for spec, as the policy file out (beside spec when empty).
func starter(spec, out, host, trustDomain string) ([]byte, error) {
	specAbs, err := filepath.Abs(spec)
	if err != nil {
		return nil, err
	}
	if out == "" {
		out = filepath.Join(filepath.Dir(spec), "policy.yaml")
	}
	outAbs, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(outAbs)
	rel, err := filepath.Rel(dir, specAbs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil, fmt.Errorf("%s is not inside %s, the policy's directory: a policy reads documents beside it", spec, dir)
	}
	f := policy.File{Name: out, Dir: dir, FS: os.DirFS(dir), FSDir: "."}
	return policy.OpenAPIStarter(f, policy.StarterOptions{Document: filepath.ToSlash(rel), Host: host, TrustDomain: trustDomain})
}

// openAPIOptions are the flags of agentauthz openapi init and routes.
type openAPIOptions struct {
	out, host, trustDomain string
}

func (o *openAPIOptions) addFlags(fs *pflag.FlagSet, init bool) {
	if init {
		fs.StringVar(&o.out, "out", "", "write the policy to FILE, whose directory must hold SPEC (default: standard output, for a policy beside SPEC)")
		fs.StringVar(&o.trustDomain, "trust-domain", "example.org", "the agents' SPIFFE trust domain")
	}
	fs.StringVar(&o.host, "host", "", "the host agents address (default: the host of the document's first server)")
}

func runOpenAPIInit(o *openAPIOptions, args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "agentauthz openapi init: name one OpenAPI document")
		return exitUsage
	}
	data, err := starter(args[0], o.out, o.host, o.trustDomain)
	if err != nil {
		fmt.Fprintf(stderr, "agentauthz openapi init: %v\n", err)
		return exitError
	}
	if o.out == "" {
		_, _ = stdout.Write(data)
		return exitOK
	}
	if _, err := os.Stat(o.out); err == nil {
		fmt.Fprintf(stderr, "agentauthz openapi init: %s exists; name another --out\n", o.out)
		return exitError
	}
	if err := os.WriteFile(o.out, data, 0o644); err != nil {
		fmt.Fprintf(stderr, "agentauthz openapi init: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "wrote %s: every operation listed, nothing granted\n", o.out)
	return exitOK
}

func runOpenAPIRoutes(o *openAPIOptions, args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "agentauthz openapi routes: name one OpenAPI document")
		return exitUsage
	}
	spec := args[0]
	data, err := starter(spec, "", o.host, "")
	if err != nil {
		fmt.Fprintf(stderr, "agentauthz openapi routes: %v\n", err)
		return exitError
	}
	dir := filepath.Dir(spec)
	snap, err := policy.Load([]policy.File{{Name: filepath.Join(dir, "policy.yaml"), Dir: dir, Data: data, FS: os.DirFS(dir), FSDir: "."}},
		policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		fmt.Fprintf(stderr, "agentauthz openapi routes: %v\n", err)
		return exitError
	}
	for _, r := range snap.OpenAPIRoutes() {
		fmt.Fprintf(stdout, "%s %s%s\n  route %s, operation %s, suggested scope %s\n", r.Method, r.Host, r.Path, r.Route, r.OperationID, r.Scope)
		for _, p := range r.Params {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
		if r.Body != "" {
			fmt.Fprintf(stdout, "  body: %s\n", r.Body)
		} else {
			fmt.Fprintln(stdout, "  no body")
		}
		if r.Approval {
			fmt.Fprintln(stdout, "  held for approval (x-agentauthz-approval)")
		}
	}
	// What could not be a route, as the starting policy lists it.
	for _, line := range strings.Split(string(data), "\n") {
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "# ") && strings.Contains(t, " cannot be a route: ") {
			fmt.Fprintf(stdout, "not a route: %s\n", strings.TrimPrefix(t, "# "))
		}
	}
	return exitOK
}

// baselineFlags collects repeated --openapi-baseline NAME=FILE flags.
type baselineFlags map[string]string

func (b baselineFlags) String() string { return "" }

func (b baselineFlags) Type() string { return "DOC=OLDER-COPY" }

func (b baselineFlags) Set(s string) error {
	name, file, ok := strings.Cut(s, "=")
	if !ok || name == "" || file == "" {
		return errors.New(`want DOCUMENT=OLDER-COPY, e.g. helpdesk.openapi.json=old/helpdesk.openapi.json`)
	}
	if _, dup := b[name]; dup {
		return fmt.Errorf("%s is given twice", name)
	}
	b[name] = file
	return nil
}
