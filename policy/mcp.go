package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy/strictjson"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// Defaults of an MCP server's JSON-RPC bodies.
const (
	defaultMCPMaxBytes = defaultMaxBodyBytes
	defaultMCPMaxDepth = 64
)

// The MCP protocol revisions agentauthz reads. Revision 2026-07-28 mirrors the method, the name
// and chosen tool arguments into headers, which must then agree with the body.
const (
	mcpRevision20250618 = "2025-06-18"
	mcpRevision20251125 = "2025-11-25"
	mcpRevision20260728 = "2026-07-28"
)

// mcpServer is an MCP server of the policy, compiled.
type mcpServer struct {
	name     string
	maxBytes int
	maxDepth int
	// methods grants JSON-RPC methods other than tools/call, resources/read and prompts/get: the
	// scopes that allow each.
	methods map[string][]int
	tools   map[string]*mcpTool
	// snapshot is the server's tools/list snapshot, by tool name, when the policy has one.
	snapshot  map[string]*snapshotTool
	resources []*mcpResource
	prompts   map[string][]int
	hasShadow bool
}

// mcpTool is a tool of an MCP server the policy grants.
type mcpTool struct {
	name      string
	rule      string // "server/tool": the rule that decides its calls
	scope     int
	scopeName string
	// schemas are the tool's snapshot inputSchema (when there is a snapshot) and the policy's
	// arguments_schema: the arguments must satisfy every one.
	schemas  []*jsonschema.Schema
	perAgent map[spiffeid.ID][]*jsonschema.Schema
	hold     *holdRule
	shadow   bool
	// response, when set, says what agents may read back of the tool's results.
	response *responseRules
	// oauthScopes are the OAuth scopes a call's access token must grant (besides the route's).
	oauthScopes []string
	// headers are the arguments revision 2026-07-28 mirrors into Mcp-Param-* headers, from the
	// snapshot's x-mcp-header annotations.
	headers []paramHeader
	// shown is the schema tools/list shows agents instead of the server's; nil shows the
	// server's.
	shown []byte
}

// snapshotTool is one tool of a tools/list snapshot.
type snapshotTool struct {
	schema  *jsonschema.Schema
	headers []paramHeader
	raw     json.RawMessage // inputSchema as the snapshot has it
}

// paramHeader is one tool argument mirrored into a header: Mcp-Param-{name}.
type paramHeader struct {
	name string   // lower case, as Envoy gives header names
	path []string // property names from the arguments object
	kind string   // "string", "integer" or "boolean"
}

// mcpResource grants the resources whose URI matches a pattern.
type mcpResource struct {
	pattern string
	parts   []string // literal text and, at odd indexes, template variables
	scope   int
}

// matches reports whether uri matches the pattern: literal parts exactly, each variable one or
// more characters other than "/", "?" and "#".
func (m *mcpResource) matches(uri string) bool {
	if len(m.parts) == 1 {
		return uri == m.parts[0]
	}
	return matchParts(m.parts, uri)
}

func matchParts(parts []string, s string) bool {
	if len(parts) == 0 {
		return s == ""
	}
	lit := parts[0]
	if !strings.HasPrefix(s, lit) {
		return false
	}
	s = s[len(lit):]
	if len(parts) == 1 {
		return s == ""
	}
	// parts[1] is a variable: one or more characters up to a stop character, trying every
	// length so that the literal after it can match.
	for i := 1; i <= len(s); i++ {
		c := s[i-1]
		if c == '/' || c == '?' || c == '#' {
			break
		}
		if matchParts(parts[2:], s[i:]) {
			return true
		}
	}
	return false
}

// splitURITemplate splits a resource pattern into literal text and {variables}.
func splitURITemplate(p string) ([]string, error) {
	var parts []string
	rest := p
	for {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			parts = append(parts, rest)
			return parts, nil
		}
		if rest[i] == '}' {
			return nil, fmt.Errorf("unbalanced } in %q", p)
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unbalanced { in %q", p)
		}
		name := rest[i+1 : i+j]
		if name == "" || strings.ContainsAny(name, "{/?#") {
			return nil, fmt.Errorf("template variable {%s} in %q: name it with letters, digits and _", name, p)
		}
		parts = append(parts, rest[:i], name)
		rest = rest[i+j+1:]
		if strings.HasPrefix(rest, "{") {
			return nil, fmt.Errorf("two template variables side by side in %q are ambiguous", p)
		}
	}
}

func (c *compiler) mcpServers(src *source) {
	for i, s := range src.policy.GetMcpServers() {
		at := fmt.Sprintf("mcp_servers[%d]", i)
		if _, dup := c.mcp[s.GetName()]; dup {
			c.addf(src, at+".name", "MCP server %q is defined twice", s.GetName())
			continue
		}
		srv := &mcpServer{
			name: s.GetName(), maxBytes: defaultMCPMaxBytes, maxDepth: defaultMCPMaxDepth,
			methods: map[string][]int{}, tools: map[string]*mcpTool{}, prompts: map[string][]int{},
		}
		if s.MaxBytes != nil {
			srv.maxBytes = int(s.GetMaxBytes())
		}
		if s.MaxDepth != nil {
			srv.maxDepth = int(s.GetMaxDepth())
		}
		c.mcp[srv.name] = srv
		if snap := s.GetToolsSnapshot(); snap != "" {
			srv.snapshot = c.toolsSnapshot(src, at+".tools_snapshot", snap)
		}
		for j, m := range s.GetMethods() {
			c.requires(src, fmt.Sprintf("%s.methods[%d].scope", at, j), m.GetScope())
			for k, name := range m.GetAllow() {
				switch name {
				case "tools/call", "resources/read", "prompts/get":
					c.addf(src, fmt.Sprintf("%s.methods[%d].allow[%d]", at, j, k),
						"%s is granted per tool, resource or prompt: list them under tools, resources or prompts", name)
					continue
				}
				srv.methods[name] = append(srv.methods[name], c.scope(m.GetScope()))
			}
		}
		for j, t := range s.GetTools() {
			c.mcpTool(src, fmt.Sprintf("%s.tools[%d]", at, j), srv, t)
		}
		for j, r := range s.GetResources() {
			c.requires(src, fmt.Sprintf("%s.resources[%d].scope", at, j), r.GetScope())
			parts, err := splitURITemplate(r.GetUri())
			if err != nil {
				c.addf(src, fmt.Sprintf("%s.resources[%d].uri", at, j), "%v", err)
				continue
			}
			srv.resources = append(srv.resources, &mcpResource{pattern: r.GetUri(), parts: parts, scope: c.scope(r.GetScope())})
		}
		for j, p := range s.GetPrompts() {
			c.requires(src, fmt.Sprintf("%s.prompts[%d].scope", at, j), p.GetScope())
			srv.prompts[p.GetName()] = append(srv.prompts[p.GetName()], c.scope(p.GetScope()))
		}
	}
}

func (c *compiler) mcpTool(src *source, at string, srv *mcpServer, t *policyv1.MCPTool) {
	if _, dup := srv.tools[t.GetName()]; dup {
		c.addf(src, at+".name", "tool %q is listed twice: list each tool once, and give some agents a tighter schema under agents", t.GetName())
		return
	}
	c.lint.rules[srv.name+"/"+t.GetName()] = true
	c.requires(src, at+".scope", t.GetScope())
	tool := &mcpTool{
		name: t.GetName(), rule: srv.name + "/" + t.GetName(), scope: c.scope(t.GetScope()), scopeName: t.GetScope(),
		shadow: t.GetShadow() || src.policy.GetShadow(), perAgent: map[spiffeid.ID][]*jsonschema.Schema{},
		oauthScopes: t.GetOauthScopes(),
	}
	ok := true
	var shownFile []byte
	if srv.snapshot != nil {
		st := srv.snapshot[t.GetName()]
		if st == nil {
			c.addf(src, at+".name", "tool %q is not in the server's tools snapshot: the server does not offer it, or the snapshot is stale", t.GetName())
			ok = false
		} else {
			tool.schemas = append(tool.schemas, st.schema)
			tool.headers = st.headers
		}
	}
	if f := t.GetArgumentsSchema(); f != "" {
		sch, data, err := c.compileArgumentsSchema(src, f)
		if err != nil {
			c.addf(src, at+".arguments_schema", "%v", err)
			ok = false
		} else {
			tool.schemas = append(tool.schemas, sch)
			shownFile = data
		}
	}
	if len(tool.schemas) == 0 && ok {
		c.addf(src, at, "tool %q has no schema: give the server a tools_snapshot, or the tool an arguments_schema", t.GetName())
		ok = false
	}
	if t.GetShowTightenedSchema() {
		switch shown, err := paramHeaders(shownFile); {
		case shownFile == nil:
			c.addf(src, at+".show_tightened_schema", "only a tool with an arguments_schema has a tightened schema to show")
			ok = false
		case err != nil:
			c.addf(src, at+".arguments_schema", "%v", err)
			ok = false
		case !sameHeaders(shown, tool.headers):
			// Clients mirror the arguments the shown schema annotates into headers, and the
			// server's annotations are what the call is checked against.
			c.addf(src, at+".show_tightened_schema", "the schema shown must annotate the same arguments with x-mcp-header as the server's")
			ok = false
		default:
			tool.shown = shownFile
		}
	}
	for j, pa := range t.GetAgents() {
		pat := fmt.Sprintf("%s.agents[%d]", at, j)
		sch, _, err := c.compileArgumentsSchema(src, pa.GetArgumentsSchema())
		if err != nil {
			c.addf(src, pat+".arguments_schema", "%v", err)
			ok = false
			continue
		}
		for k, a := range pa.GetAgents() {
			id, err := spiffeid.FromString(a)
			if err != nil {
				c.addf(src, fmt.Sprintf("%s.agents[%d]", pat, k), "not a SPIFFE ID: %v", err)
				ok = false
				continue
			}
			if c.snap.agents[id] == nil {
				c.addf(src, fmt.Sprintf("%s.agents[%d]", pat, k), "agent %s is not defined in this policy", id)
				ok = false
				continue
			}
			tool.perAgent[id] = append(tool.perAgent[id], sch)
		}
	}
	if t.GetApproval() != nil {
		tool.hold = c.holdRule(src, at+".approval", tool.rule, t.GetApproval(), nil)
		if tool.hold == nil {
			ok = false
		} else {
			// An approved call carries the grant of the route it came through (the server may be
			// reached on several hosts), without the approval header.
			tool.hold.hold.Retry = nil
			tool.hold.hold.Implicit = true
		}
	}
	if t.GetResponse() != nil {
		tool.response = c.responseRule(src, at+".response", "mcp:"+tool.rule, t.GetResponse(), true)
		ok = ok && tool.response != nil
	}
	if !ok {
		return
	}
	if tool.shadow {
		srv.hasShadow = true
		c.snap.hasShadow = true
	}
	srv.tools[tool.name] = tool
}

// compileArgumentsSchema compiles a JSON Schema file a tool's arguments must satisfy, and
// returns the file too (tools/list may show it).
func (c *compiler) compileArgumentsSchema(src *source, ref string) (*jsonschema.Schema, []byte, error) {
	data, err := c.readRef(src, ref)
	if err != nil {
		return nil, nil, err
	}
	sch, err := compileSchemaBytes(ref, data)
	return sch, data, err
}

// compileSchemaBytes compiles a JSON Schema (2020-12 unless it says otherwise) read strictly
// from data, refusing every reference outside it. name says where it came from.
func compileSchemaBytes(name string, data []byte) (*jsonschema.Schema, error) {
	if err := strictjson.Check(data, schemaMaxDepth); err != nil {
		return nil, fmt.Errorf("%s: not strict JSON: %v", name, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: not JSON: %v", name, err)
	}
	url := "file:///policy/" + path.Clean(strings.ReplaceAll(name, "#", "/"))
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020)
	comp.AssertFormat()
	comp.UseLoader(noRemoteLoader{})
	if err := comp.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	sch, err := comp.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return sch, nil
}

// toolsSnapshot reads a tools/list snapshot: {"tools": [{"name": ..., "inputSchema": ...}]}.
func (c *compiler) toolsSnapshot(src *source, at, ref string) map[string]*snapshotTool {
	data, err := c.readRef(src, ref)
	if err != nil {
		c.addf(src, at, "%v", err)
		return nil
	}
	if err := strictjson.Check(data, schemaMaxDepth); err != nil {
		c.addf(src, at, "%s: not strict JSON: %v", ref, err)
		return nil
	}
	var doc struct {
		Tools []struct {
			Name        string          `json:"name"`
			InputSchema json.RawMessage `json:"inputSchema"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		c.addf(src, at, "%s: not a tools/list result: %v", ref, err)
		return nil
	}
	out := map[string]*snapshotTool{}
	for i, t := range doc.Tools {
		where := fmt.Sprintf("%s: tools[%d]", ref, i)
		if t.Name == "" {
			c.addf(src, at, "%s: a tool without a name", where)
			continue
		}
		if out[t.Name] != nil {
			c.addf(src, at, "%s: tool %q is listed twice", where, t.Name)
			continue
		}
		if len(t.InputSchema) == 0 {
			c.addf(src, at, "%s: tool %q has no inputSchema", where, t.Name)
			continue
		}
		sch, err := compileSchemaBytes(ref+"#"+t.Name, t.InputSchema)
		if err != nil {
			c.addf(src, at, "%s: tool %q: %v", where, t.Name, err)
			continue
		}
		headers, err := paramHeaders(t.InputSchema)
		if err != nil {
			c.addf(src, at, "%s: tool %q: %v", where, t.Name, err)
			continue
		}
		out[t.Name] = &snapshotTool{schema: sch, headers: headers, raw: t.InputSchema}
	}
	return out
}

// paramHeaders reads the x-mcp-header annotations of an inputSchema: each on a string, integer
// or boolean property reached from the root through properties only, with a header-name token
// unique (ignoring case) in the schema. A tool with any other annotation is invalid, as MCP's
// clients also treat it.
func paramHeaders(schema json.RawMessage) ([]paramHeader, error) {
	var root any
	if err := json.Unmarshal(schema, &root); err != nil {
		return nil, err
	}
	var out []paramHeader
	seen := map[string]bool{}
	var walk func(v any, at []string, reachable bool) error
	walk = func(v any, at []string, reachable bool) error {
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				child := x[k]
				if k == "x-mcp-header" {
					name, ok := child.(string)
					switch {
					case !ok || name == "" || !isToken(name):
						return fmt.Errorf("x-mcp-header at /%s must be a header-name token", strings.Join(at, "/"))
					case !reachable || len(at) == 0:
						return fmt.Errorf("x-mcp-header %q must annotate a property reached from the root through properties only", name)
					case seen[asciiLower(name)]:
						return fmt.Errorf("x-mcp-header %q is used twice", name)
					}
					kind, _ := x["type"].(string)
					if kind != "string" && kind != "integer" && kind != "boolean" {
						return fmt.Errorf("x-mcp-header %q must annotate a string, integer or boolean property", name)
					}
					seen[asciiLower(name)] = true
					out = append(out, paramHeader{name: "mcp-param-" + asciiLower(name), path: append([]string(nil), at...), kind: kind})
					continue
				}
				if k == "properties" {
					if props, ok := child.(map[string]any); ok {
						names := make([]string, 0, len(props))
						for n := range props {
							names = append(names, n)
						}
						sort.Strings(names)
						for _, n := range names {
							if err := walk(props[n], append(at, n), reachable); err != nil {
								return err
							}
						}
						continue
					}
				}
				if err := walk(child, at, false); err != nil {
					return err
				}
			}
		case []any:
			for _, e := range x {
				if err := walk(e, at, false); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, nil, true); err != nil {
		return nil, err
	}
	return out, nil
}

// isToken reports whether s is an HTTP field-name token (RFC 9110).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// sameHeaders reports whether two schemas mirror the same arguments into the same headers.
func sameHeaders(a, b []paramHeader) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name != b[i].name || a[i].kind != b[i].kind || strings.Join(a[i].path, "\x00") != strings.Join(b[i].path, "\x00") {
			return false
		}
	}
	return true
}
