package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"go.yaml.in/yaml/v3"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/oauthkeys"
	"github.com/agentauthz/agentauthz/internal/policytest"
	"github.com/agentauthz/agentauthz/internal/service"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// headerFlags collects repeated --header "name: value" flags.
type headerFlags map[string]string

func (h headerFlags) String() string { return "" }

func (h headerFlags) Type() string { return "\"name: value\"" }

func (h headerFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, ":")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("%q is not \"name: value\"", s)
	}
	h[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	return nil
}

// checkOptions are the flags of agentauthz check.
type checkOptions struct {
	policyPath, reqFile, checkReqFile string
	r                                 extauthz.HTTPRequest
	headers                           headerFlags
	mcp                               policytest.MCP
	mcpArgs, mcpParams                string
	explain                           bool
	bundles                           multiFlag
	tokenFile, claimsFile             string
	output                            string
	failOnDeny                        bool
	resp                              *responseFlags
}

func (o *checkOptions) addFlags(fs *pflag.FlagSet) {
	o.headers = headerFlags{}
	fs.StringVar(&o.policyPath, "policy", "", "policy file or directory (default: the embedded demo policy)")
	fs.StringVar(&o.reqFile, "request", "", "YAML or JSON file describing the request (principal, method, host, path, headers, body)")
	fs.StringVar(&o.checkReqFile, "check-request", "", "protojson file holding the CheckRequest Envoy sends (as captured from Envoy or grpcurl); the whole request")
	fs.StringVar(&o.r.Principal, "agent", "", "the agent's SPIFFE ID")
	fs.StringVar(&o.r.Method, "method", "GET", "HTTP method")
	fs.StringVar(&o.r.Host, "host", "", "host (:authority)")
	fs.StringVar(&o.r.Path, "path", "", "raw path with query, e.g. '/v1/tickets?status=open'")
	fs.Var(o.headers, "header", "request header \"name: value\" (repeatable)")
	fs.StringVar(&o.r.Body, "body", "", "request body")
	fs.StringVar(&o.mcp.Tool, "mcp-tool", "", "on an MCP route: call this tool (a JSON-RPC tools/call POST built for you)")
	fs.StringVar(&o.mcpArgs, "mcp-args", "", "on an MCP route: the tool's arguments, a JSON object")
	fs.StringVar(&o.mcp.Method, "mcp-method", "", "on an MCP route: send this JSON-RPC method instead of a tool call (tools/list, resources/read, ...)")
	fs.StringVar(&o.mcpParams, "mcp-params", "", "on an MCP route: the method's params, a JSON object")
	fs.StringVar(&o.mcp.Version, "mcp-version", "", "on an MCP route: the MCP-Protocol-Version (default 2025-11-25)")
	o.resp = addResponseFlags(fs)
	fs.BoolVar(&o.explain, "explain", false, "show which rules were considered and why each matched or not, and why an approval condition (when) held or not")
	fs.Var(&o.bundles, "jwt-bundle", "TRUST_DOMAIN=FILE: a JWT bundle (JWKS) to validate a JWT-SVID the request carries (repeatable)")
	fs.StringVar(&o.tokenFile, "token", "", "file holding an OAuth access token the request carries as Authorization: Bearer; validated against its issuer's keys (the policy's jwks_file, or fetched from the issuer)")
	fs.StringVar(&o.claimsFile, "claims", "", "YAML or JSON file of an access token's claims, signed offline and sent as Authorization: Bearer (exp, nbf, iat may be durations from now)")
	fs.StringVarP(&o.output, "output", "o", "text", "how to print the decision: text, or json (one JSON object, see the CLI reference)")
	fs.BoolVar(&o.failOnDeny, "fail-on-deny", false, "exit with status 3 when the request is denied (default: a deny is a decision, exit status 0)")
}

// runCheck decides one request offline and prints the decision.
func runCheck(o *checkOptions, fs *pflag.FlagSet, args []string, stdout, stderr io.Writer) int {
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "agentauthz check: "+format+"\n", a...)
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "agentauthz check: %v\n", err)
		return exitError
	}
	r, mcp := o.r, o.mcp
	if len(args) > 0 {
		return usage("unexpected argument %q", args[0])
	}
	if o.output != "text" && o.output != "json" {
		return usage("-o %q: use text or json", o.output)
	}
	if o.tokenFile != "" && o.claimsFile != "" {
		return usage("give --token or --claims, not both")
	}
	if o.resp.file != "" && o.output == "json" {
		return usage("--response-file prints text; drop -o json")
	}
	var cr *authv3.CheckRequest
	switch {
	case o.checkReqFile != "":
		if given := requestFlags(fs); len(given) > 0 {
			return usage("--check-request is the whole request; drop %s", strings.Join(given, ", "))
		}
		var err error
		if cr, err = policytest.ReadCheckRequest(o.checkReqFile); err != nil {
			return fail(err)
		}
	case o.reqFile != "":
		if given := requestFileFlags(fs); len(given) > 0 {
			return usage("--request is the whole request; drop %s or put it in %s", strings.Join(given, ", "), o.reqFile)
		}
		var err error
		if r, err = readRequestFile(o.reqFile); err != nil {
			return fail(err)
		}
	default:
		r.Headers = o.headers
		if r.Host == "" || r.Path == "" {
			return usage("give --request FILE, --check-request FILE, or at least --host and --path")
		}
		if mcpGiven(fs) {
			if given := mcpConflicts(fs); len(given) > 0 {
				return usage("the --mcp-* flags build the method and body; drop %s", strings.Join(given, ", "))
			}
			for _, f := range []struct {
				flag, text string
				into       *map[string]any
			}{{"--mcp-args", o.mcpArgs, &mcp.Arguments}, {"--mcp-params", o.mcpParams, &mcp.Params}} {
				if f.text == "" {
					continue
				}
				if err := json.Unmarshal([]byte(f.text), f.into); err != nil {
					return usage("%s is not a JSON object: %s", f.flag, jsonProblem(err))
				}
			}
			if err := mcp.Apply(&r); err != nil {
				return usage("%v", err)
			}
		}
	}
	if (o.tokenFile != "" || o.claimsFile != "") && hasHeader(r.Headers, "authorization") {
		return usage("--token and --claims are sent as the authorization header; drop the request's own")
	}

	snap, err := loadOffline(o.policyPath)
	if err != nil {
		return printLoadError(stderr, "check", err)
	}
	// check may fetch issuers' keys: it validates a real token as the server would.
	e, claims, err := offlineEngine(snap, o.bundles, oauthkeys.New(oauthkeys.Config{}))
	if err != nil {
		return fail(err)
	}
	if cr == nil {
		tok, err := checkToken(o.tokenFile, o.claimsFile, claims)
		if err != nil {
			return fail(err)
		}
		if tok != "" {
			h := make(map[string]string, len(r.Headers)+1)
			for k, v := range r.Headers {
				h[k] = v
			}
			h["authorization"] = "Bearer " + tok
			r.Headers = h
		}
		cr = r.CheckRequest()
	}
	req := extauthz.ReadRequest(cr)
	req.Explain = o.explain
	res := e.Decide(context.Background(), &req)
	d := res.Decision
	if o.output == "json" {
		if err := writeCheckJSON(stdout, &res); err != nil {
			return fail(err)
		}
	} else {
		for _, s := range res.Explain {
			fmt.Fprintln(stdout, s)
		}
		printDecision(stdout, &d)
		if d.ShadowRule != "" {
			fmt.Fprintf(stdout, "  shadow rule %s would decide %s %s (not enforced)\n", d.ShadowRule, d.ShadowOutcome, d.ShadowCode)
		}
		if d.Approval != nil {
			fmt.Fprintln(stdout, "  (offline: the approval is held in memory only; a server holds it in its approval store)")
		}
	}
	if o.resp.file != "" {
		return o.resp.apply(e, &res, o.failOnDeny, stdout, stderr)
	}
	if !d.Allowed() && o.failOnDeny {
		return exitDenied
	}
	return exitOK
}

// mcpGiven reports whether any --mcp-* flag was given.
func mcpGiven(fs *pflag.FlagSet) bool {
	given := false
	fs.Visit(func(f *pflag.Flag) { given = given || strings.HasPrefix(f.Name, "mcp-") })
	return given
}

// mcpConflicts lists the flags given that an MCP message replaces.
func mcpConflicts(fs *pflag.FlagSet) []string {
	var given []string
	fs.Visit(func(f *pflag.Flag) {
		if f.Name == "method" || f.Name == "body" {
			given = append(given, "--"+f.Name)
		}
	})
	return given
}

// requestFlags lists the flags given that describe the request, which --check-request replaces.
func requestFlags(fs *pflag.FlagSet) []string {
	var given []string
	fs.Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "request", "agent", "method", "host", "path", "header", "body", "token", "claims",
			"mcp-tool", "mcp-args", "mcp-method", "mcp-params", "mcp-version":
			given = append(given, "--"+f.Name)
		}
	})
	return given
}

// requestFileFlags lists the flags given that describe the request line, which --request
// replaces: the file is the whole request, and a flag beside it would be silently ignored or
// silently win. --token and --claims are not among them: they add the authorization header.
func requestFileFlags(fs *pflag.FlagSet) []string {
	var given []string
	fs.Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "agent", "method", "host", "path", "header", "body",
			"mcp-tool", "mcp-args", "mcp-method", "mcp-params", "mcp-version":
			given = append(given, "--"+f.Name)
		}
	})
	return given
}

// requestFields are the keys of a --request file.
var requestFields = []string{"principal", "method", "host", "path", "headers", "body", "protocol"}

func readRequestFile(path string) (extauthz.HTTPRequest, error) {
	var r extauthz.HTTPRequest
	data, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		// A TypeError lists one problem a line; the command prints one line.
		return r, fmt.Errorf("%s: %s", path, yamlProblem(err, requestFields))
	}
	return r, nil
}

// checkToken reads the access token of --token, or signs the claims of --claims; "" for
// neither.
func checkToken(tokenFile, claimsFile string, claims *policytest.Claims) (string, error) {
	switch {
	case tokenFile != "":
		data, err := os.ReadFile(tokenFile)
		if err != nil {
			return "", err
		}
		tok := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
		if tok == "" {
			return "", fmt.Errorf("%s holds no token", tokenFile)
		}
		return tok, nil
	case claimsFile != "":
		data, err := os.ReadFile(claimsFile)
		if err != nil {
			return "", err
		}
		var c map[string]any
		dec := yaml.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&c); err != nil || c == nil {
			return "", fmt.Errorf("%s: not a mapping of claims", claimsFile)
		}
		return claims.Token(c)
	}
	return "", nil
}

// hasHeader reports whether h names header name, in any case.
func hasHeader(h map[string]string, name string) bool {
	for k := range h {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// offlineEngine is the engine check and test decide with: the server's pipeline, with JWT
// bundles from files, approvals held in memory, and OAuth access tokens validated against the
// policy's keys, next (nil: no others) and the offline key of the claims it returns.
func offlineEngine(snap *policy.Snapshot, bundleSpecs []string, next accesstoken.Keys) (*engine.Engine, *policytest.Claims, error) {
	var bundles jwtbundle.Source
	if len(bundleSpecs) > 0 {
		set, err := service.LoadJWTBundles(bundleSpecs)
		if err != nil {
			return nil, nil, err
		}
		bundles = set
	}
	claims := policytest.NewClaims(snap, next)
	return policytest.Engine(snap, bundles, claims), claims, nil
}

// loadOffline loads a policy without reading its credentials.
func loadOffline(path string) (*policy.Snapshot, error) {
	if path == "" {
		files, err := policy.ReadFS(demo.Files, demo.Dir)
		if err != nil {
			return nil, err
		}
		return policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	}
	files, err := policy.ReadPath(path)
	if err != nil {
		return nil, err
	}
	return policy.Load(files, policy.Options{Secrets: policy.Placeholders})
}

func printDecision(w io.Writer, d *decision.Decision) {
	rule := d.Rule
	if rule == "" {
		rule = "(no route matched)"
	}
	if d.Allowed() {
		fmt.Fprintf(w, "allow  rule=%s\n", rule)
		if g := d.Grant; g != nil {
			for _, h := range g.Set {
				fmt.Fprintf(w, "  set header     %s: %s\n", h.Name, h.Value)
			}
			// The forwarded-context headers the host does not trust are one line: the same on
			// every host that trusts none of them.
			forwarded := policy.ForwardedHeaders()
			removed := 0
			for _, h := range g.Remove {
				if slices.Contains(forwarded, h) {
					removed++
					continue
				}
				fmt.Fprintf(w, "  remove header  %s\n", h)
			}
			if removed > 0 {
				but := ""
				if removed < len(forwarded) {
					var kept []string
					for _, h := range forwarded {
						if !slices.Contains(g.Remove, h) {
							kept = append(kept, h)
						}
					}
					but = " but " + strings.Join(kept, ", ")
				}
				fmt.Fprintf(w, "  remove header  every forwarded-context header%s (trust_forwarded_headers)\n", but)
			}
		}
		for _, q := range d.RemoveQuery {
			fmt.Fprintf(w, "  strip query    %s\n", q)
		}
		if d.Response != "" {
			key, _, _ := strings.Cut(d.Response, "@")
			fmt.Fprintf(w, "  response rule  %s (the answer is filtered: --response-file shows how)\n", key)
		}
		return
	}
	if d.Answer != nil {
		// agentauthz answers the request itself (a protected resource's metadata).
		fmt.Fprintf(w, "answer %d %s\n  %s\n  %s\n", d.Status(), d.Code, d.Detail, d.Answer)
		return
	}
	fmt.Fprintf(w, "deny %d %s  rule=%s\n  %s\n", d.Status(), d.Code, rule, d.Detail)
	if d.Challenge != "" {
		fmt.Fprintf(w, "  www-authenticate: %s\n", d.Challenge)
	}
	for _, v := range d.Violations {
		field := v.Field
		if field == "" {
			field = "(the whole body)"
		}
		fmt.Fprintf(w, "  %s: %s (%s)\n", field, v.Message, v.Rule)
	}
	if status, body, ok := d.MCPAnswer(""); ok {
		form := "a JSON-RPC error"
		if strings.Contains(body, `"isError":true`) {
			form = "the tool's result, marked isError"
		}
		fmt.Fprintf(w, "  the MCP client gets %s, HTTP status %d\n", form, status)
	}
}

// printLoadError prints every problem of a policy that did not load, or the one error, and
// returns the exit code: exitProblems for a policy with problems, exitError for one that could
// not be read.
func printLoadError(w io.Writer, cmd string, err error) int {
	var problems policy.Problems
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Fprintln(w, p)
		}
		fmt.Fprintf(w, "agentauthz %s: the policy has %d problem(s)\n", cmd, len(problems))
		return exitProblems
	}
	fmt.Fprintf(w, "agentauthz %s: %v\n", cmd, err)
	return exitError
}
