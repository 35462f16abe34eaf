package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
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

func (h headerFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, ":")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("%q is not \"name: value\"", s)
	}
	h[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	return nil
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	policyPath := fs.String("policy", "", "policy file or directory (default: the embedded demo policy)")
	reqFile := fs.String("request", "", "YAML or JSON file describing the request (principal, method, host, path, headers, body)")
	checkReqFile := fs.String("check-request", "", "protojson file holding the CheckRequest Envoy sends (as captured from Envoy or grpcurl); the whole request")
	var r extauthz.HTTPRequest
	headers := headerFlags{}
	fs.StringVar(&r.Principal, "agent", "", "the agent's SPIFFE ID")
	fs.StringVar(&r.Method, "method", "GET", "HTTP method")
	fs.StringVar(&r.Host, "host", "", "host (:authority)")
	fs.StringVar(&r.Path, "path", "", "raw path with query, e.g. '/v1/tickets?status=open'")
	fs.Var(headers, "header", "request header \"name: value\" (repeatable)")
	fs.StringVar(&r.Body, "body", "", "request body")
	var mcp policytest.MCP
	var mcpArgs, mcpParams string
	fs.StringVar(&mcp.Tool, "mcp-tool", "", "on an MCP route: call this tool (a JSON-RPC tools/call POST built for you)")
	fs.StringVar(&mcpArgs, "mcp-args", "", "on an MCP route: the tool's arguments, a JSON object")
	fs.StringVar(&mcp.Method, "mcp-method", "", "on an MCP route: send this JSON-RPC method instead of a tool call (tools/list, resources/read, ...)")
	fs.StringVar(&mcpParams, "mcp-params", "", "on an MCP route: the method's params, a JSON object")
	fs.StringVar(&mcp.Version, "mcp-version", "", "on an MCP route: the MCP-Protocol-Version (default 2025-11-25)")
	resp := addResponseFlags(fs)
	explain := fs.Bool("explain", false, "show which rules were considered and why each matched or not")
	var bundles multiFlag
	fs.Var(&bundles, "jwt-bundle", "TRUST_DOMAIN=FILE: a JWT bundle (JWKS) to validate a JWT-SVID the request carries (repeatable)")
	tokenFile := fs.String("token", "", "file holding an OAuth access token the request carries as Authorization: Bearer; validated against its issuer's keys (the policy's jwks_file, or fetched from the issuer)")
	claimsFile := fs.String("claims", "", "YAML or JSON file of an access token's claims, signed offline and sent as Authorization: Bearer (exp, nbf, iat may be durations from now)")
	if ok, code := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agentauthz check: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *tokenFile != "" && *claimsFile != "" {
		fmt.Fprintln(stderr, "agentauthz check: give --token or --claims, not both")
		return exitUsage
	}
	var cr *authv3.CheckRequest
	switch {
	case *checkReqFile != "":
		if given := requestFlags(fs); len(given) > 0 {
			fmt.Fprintf(stderr, "agentauthz check: --check-request is the whole request; drop %s\n", strings.Join(given, ", "))
			return exitUsage
		}
		var err error
		if cr, err = policytest.ReadCheckRequest(*checkReqFile); err != nil {
			fmt.Fprintf(stderr, "agentauthz check: %v\n", err)
			return exitUsage
		}
	case *reqFile != "":
		var err error
		if r, err = readRequestFile(*reqFile); err != nil {
			fmt.Fprintf(stderr, "agentauthz check: %v\n", err)
			return exitUsage
		}
	default:
		r.Headers = headers
		if r.Host == "" || r.Path == "" {
			fmt.Fprintln(stderr, "agentauthz check: give --request FILE, --check-request FILE, or at least --host and --path")
			return exitUsage
		}
		if mcpGiven(fs) {
			if given := mcpConflicts(fs); len(given) > 0 {
				fmt.Fprintf(stderr, "agentauthz check: the --mcp-* flags build the method and body; drop %s\n", strings.Join(given, ", "))
				return exitUsage
			}
			for _, f := range []struct {
				flag, text string
				into       *map[string]any
			}{{"--mcp-args", mcpArgs, &mcp.Arguments}, {"--mcp-params", mcpParams, &mcp.Params}} {
				if f.text == "" {
					continue
				}
				if err := json.Unmarshal([]byte(f.text), f.into); err != nil {
					fmt.Fprintf(stderr, "agentauthz check: %s is not a JSON object: %v\n", f.flag, err)
					return exitUsage
				}
			}
			if err := mcp.Apply(&r); err != nil {
				fmt.Fprintf(stderr, "agentauthz check: %v\n", err)
				return exitUsage
			}
		}
	}
	if (*tokenFile != "" || *claimsFile != "") && hasHeader(r.Headers, "authorization") {
		fmt.Fprintln(stderr, "agentauthz check: --token and --claims are sent as the authorization header; drop the request's own")
		return exitUsage
	}

	snap, err := loadOffline(*policyPath)
	if err != nil {
		printLoadError(stderr, "check", err)
		return exitUsage
	}
	// check may fetch issuers' keys: it validates a real token as the server would.
	e, claims, err := offlineEngine(snap, bundles, oauthkeys.New(oauthkeys.Config{}))
	if err != nil {
		fmt.Fprintf(stderr, "agentauthz check: %v\n", err)
		return exitUsage
	}
	if cr == nil {
		tok, err := checkToken(*tokenFile, *claimsFile, claims)
		if err != nil {
			fmt.Fprintf(stderr, "agentauthz check: %v\n", err)
			return exitUsage
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
	req.Explain = *explain
	res := e.Decide(context.Background(), &req)
	for _, s := range res.Explain {
		fmt.Fprintln(stdout, s)
	}
	d := res.Decision
	printDecision(stdout, &d)
	if d.ShadowRule != "" {
		fmt.Fprintf(stdout, "  shadow rule %s would decide %s %s (not enforced)\n", d.ShadowRule, d.ShadowOutcome, d.ShadowCode)
	}
	if d.Approval != nil {
		fmt.Fprintln(stdout, "  (offline: the approval is held in memory only; a server holds it in its approval store)")
	}
	if resp.file != "" {
		return resp.apply(e, &res, stdout, stderr)
	}
	if d.Allowed() {
		return exitOK
	}
	return exitDeny
}

// mcpGiven reports whether any --mcp-* flag was given.
func mcpGiven(fs *flag.FlagSet) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || strings.HasPrefix(f.Name, "mcp-") })
	return given
}

// mcpConflicts lists the flags given that an MCP message replaces.
func mcpConflicts(fs *flag.FlagSet) []string {
	var given []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "method" || f.Name == "body" {
			given = append(given, "--"+f.Name)
		}
	})
	return given
}

// requestFlags lists the flags given that describe the request, which --check-request replaces.
func requestFlags(fs *flag.FlagSet) []string {
	var given []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "request", "agent", "method", "host", "path", "header", "body", "token", "claims",
			"mcp-tool", "mcp-args", "mcp-method", "mcp-params", "mcp-version":
			given = append(given, "--"+f.Name)
		}
	})
	return given
}

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
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return r, fmt.Errorf("%s: %s", path, strings.Join(te.Errors, "; "))
		}
		return r, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
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

// printLoadError prints every problem of a policy that did not load, or the one error.
func printLoadError(w io.Writer, cmd string, err error) {
	var problems policy.Problems
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Fprintln(w, p)
		}
		fmt.Fprintf(w, "agentauthz %s: the policy has %d problem(s)\n", cmd, len(problems))
		return
	}
	fmt.Fprintf(w, "agentauthz %s: %v\n", cmd, err)
}
