package extauthz_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// The fuzz oracle: what the demo policy may allow, written from demo/policy/acme.yaml and its
// schemas without the policy engine, strictjson or gqlparser. It states necessary conditions
// only: every request it objects to must be denied, but not every request it accepts is allowed.

// demoRoutes is the demo policy's allowed surface: which agent may call which method, host and
// raw path by which rule. delete-ticket is absent: no agent holds its scope.
var demoRoutes = map[string]struct {
	agent, method, host string
	path                *regexp.Regexp
}{
	"list-tickets":   {demoAgents[0], "GET", "helpdesk.acme.internal", regexp.MustCompile(`^/v1/tickets(\?.+)?$`)},
	"get-ticket":     {demoAgents[0], "GET", "helpdesk.acme.internal", regexp.MustCompile(`^/v1/tickets/[0-9]{1,12}$`)},
	"comment-ticket": {demoAgents[0], "POST", "helpdesk.acme.internal", regexp.MustCompile(`^/v1/tickets/[0-9]{1,12}/comments$`)},
	"reset-password": {demoAgents[0], "POST", "helpdesk.acme.internal", regexp.MustCompile(`^/v1/users/[a-z][a-z0-9._-]{0,63}/password-reset$`)},
	"bi-graphql":     {demoAgents[1], "POST", "bi.acme.internal", regexp.MustCompile(`^/graphql$`)},
	"bi-graphql-get": {demoAgents[1], "GET", "bi.acme.internal", regexp.MustCompile(`^/graphql\?.+$`)},
}

// demoHeld are the demo's routes that hold every request for an approver: the oracle's
// conditions still apply to what they hold, but without an approval they allow nothing.
var demoHeld = map[string]bool{"reset-password": true}

// demoOracle says why the demo policy must not allow a request, or "" if it may. headerName and
// headerValue are the one header the fuzz input adds to the fixed ones.
func demoOracle(principal, method, host, path, rule, headerName, headerValue string, body []byte) string {
	r, ok := demoRoutes[rule]
	switch {
	case !ok:
		return "no such allowed rule"
	case principal != r.agent:
		return "wrong agent"
	case method != r.method:
		return "wrong method"
	case asciiLower(host) != r.host:
		return "wrong host"
	case !r.path.MatchString(path):
		return "path does not match the route"
	}
	if why := demoBodyOracle(rule, headerName, headerValue, body); why != "" {
		return why
	}
	_, query, _ := strings.Cut(path, "?")
	switch {
	case rule == "bi-graphql-get":
		return demoGraphQLGetOracle(query)
	case rule != "list-tickets" || query == "":
		return ""
	}
	seen := map[string]bool{}
	for _, pair := range strings.Split(query, "&") {
		rawK, rawV, _ := strings.Cut(pair, "=")
		k, err1 := url.QueryUnescape(rawK)
		v, err2 := url.QueryUnescape(rawV)
		switch {
		case err1 != nil || err2 != nil:
			return "query does not decode"
		case seen[k]:
			return "repeated query parameter " + k
		case k == "status" && v != "open" && v != "pending" && v != "closed":
			return "status " + v
		case k == "limit" && !regexp.MustCompile(`^([1-9][0-9]?|100)$`).MatchString(v):
			return "limit " + v
		case k != "status" && k != "limit":
			return "unknown query parameter " + k
		}
		seen[k] = true
	}
	return ""
}

// demoBodyOracle says why the demo policy must not allow body on rule, or "" if it may:
// comment-ticket takes exactly {"body": 1..4000 characters}, reset-password a
// PasswordResetRequest in protojson, bi-graphql one GraphQL request object; all of them as
// application/json. Every other route takes no body.
func demoBodyOracle(rule, headerName, headerValue string, body []byte) string {
	switch rule {
	case "comment-ticket", "reset-password", "bi-graphql":
	default:
		if len(body) > 0 {
			return "a body on a route that takes none"
		}
		return ""
	}
	if len(body) == 0 {
		return "no body on a route that needs one"
	}
	// The fuzz input's request carries no content-type unless its one extra header is it.
	if asciiLower(headerName) != "content-type" {
		return "a body without content-type"
	}
	mt, params, err := mime.ParseMediaType(headerValue)
	if err != nil || mt != "application/json" {
		return "content-type " + headerValue
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return "content-type parameter " + k + "=" + v
		}
	}
	maxBytes := map[string]int{"comment-ticket": 16384, "reset-password": 4096, "bi-graphql": 16384}[rule]
	if len(body) > maxBytes {
		return "body over max_bytes"
	}
	obj, why := strictObject(body)
	if why != "" {
		return why
	}
	switch rule {
	case "comment-ticket":
		text, ok := obj["body"].(string)
		if n := utf8.RuneCountInString(text); len(obj) != 1 || !ok || n < 1 || n > 4000 {
			return "body is not {\"body\": 1..4000 characters}"
		}
		return ""
	case "bi-graphql":
		return demoGraphQLBodyOracle(obj)
	}
	_, snake := obj["notify_user"]
	_, camel := obj["notifyUser"]
	if snake && camel {
		return "notify_user given twice, by its proto and its JSON name"
	}
	for k, v := range obj {
		switch k {
		case "reason":
			text, ok := v.(string)
			if n := utf8.RuneCountInString(text); !ok || n < 10 || n > 500 {
				return "reason is not 10..500 characters"
			}
		case "notify_user", "notifyUser":
			if _, ok := v.(bool); !ok && v != nil {
				return "notify_user is not a boolean"
			}
		default:
			return "unknown field " + k
		}
	}
	if _, ok := obj["reason"]; !ok {
		return "reason is missing"
	}
	return ""
}

// strictObject reads body as one JSON object the way every parser agrees on, with
// encoding/json's tokenizer: UTF-8, no duplicate member names (compared unescaped), nothing
// after the value, nesting at most 32 deep. It returns the object, or why it is not one.
func strictObject(body []byte) (map[string]any, string) {
	if !utf8.Valid(body) {
		return nil, "body is not UTF-8"
	}
	type frame struct {
		keys    map[string]bool // nil for an array
		wantKey bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(body))
	values := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, "body is not JSON"
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top == nil {
			if values++; values > 1 {
				return nil, "data after the JSON value"
			}
		}
		if s, ok := tok.(string); ok && top != nil && top.keys != nil && top.wantKey {
			if top.keys[s] {
				return nil, "duplicate member " + s
			}
			top.keys[s], top.wantKey = true, false
			continue
		}
		d, isDelim := tok.(json.Delim)
		if isDelim && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil && top.keys != nil {
			top.wantKey = true // the value of a member: a name comes next
		}
		switch d {
		case '{':
			stack = append(stack, &frame{keys: map[string]bool{}, wantKey: true})
		case '[':
			stack = append(stack, &frame{})
		}
		if len(stack) > 32 {
			return nil, "nesting deeper than 32"
		}
	}
	var obj map[string]any
	dec = json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, "body is not a JSON object"
	}
	return obj, ""
}

// demoGraphQLBodyOracle checks a bi-graphql request object: only query, operationName,
// variables and extensions; a query the demo API may run.
func demoGraphQLBodyOracle(obj map[string]any) string {
	for k, v := range obj {
		switch k {
		case "query":
		case "operationName":
			if _, ok := v.(string); !ok && v != nil {
				return "operationName is not a string"
			}
		case "variables":
			if _, ok := v.(map[string]any); !ok && v != nil {
				return "variables is not an object"
			}
		case "extensions":
			ext, ok := v.(map[string]any)
			if _, pq := ext["persistedQuery"]; v != nil && (!ok || len(ext) != 1 || !pq) {
				return "extensions holds more than persistedQuery"
			}
		default:
			return "unknown envelope member " + k
		}
	}
	q, ok := obj["query"].(string)
	if !ok {
		return "query is not a string"
	}
	return demoGraphQLDocOracle(q)
}

// demoGraphQLGetOracle checks a bi-graphql-get query string: query, operationName and variables,
// each at most once, query required.
func demoGraphQLGetOracle(query string) string {
	vals := map[string]string{}
	for _, pair := range strings.Split(query, "&") {
		rawK, rawV, _ := strings.Cut(pair, "=")
		k, err1 := url.QueryUnescape(rawK)
		v, err2 := url.QueryUnescape(rawV)
		switch {
		case err1 != nil || err2 != nil:
			return "query does not decode"
		case k != "query" && k != "operationName" && k != "variables":
			return "unknown GraphQL GET parameter " + k
		}
		if _, dup := vals[k]; dup {
			return "repeated GraphQL GET parameter " + k
		}
		vals[k] = v
	}
	if vals["query"] == "" {
		return "no query parameter"
	}
	if v := vals["variables"]; v != "" && strings.Trim(v, " \t\r\n") != "null" {
		if _, why := strictObject([]byte(v)); why != "" {
			return "variables: " + why
		}
	}
	return demoGraphQLDocOracle(vals["query"])
}

// demoFieldNames are the only fields the bi agent may select: Query.revenue, Query.customers,
// Revenue.*, Customer.name, Customer.orders, Order.*, and __typename.
var demoFieldNames = map[string]bool{
	"revenue": true, "customers": true, "total": true, "currency": true, "name": true,
	"orders": true, "id": true, "customer": true, "__typename": true,
}

// demoGraphQLDocOracle says why a GraphQL document must be refused: an operation other than a
// query, a field outside demoFieldNames (email, phone, __schema, __type, deleteCustomer...),
// more than 10 aliases in its text, or text that does not even lex.
func demoGraphQLDocOracle(doc string) string {
	toks, ok := gqlLex(doc)
	switch {
	case !ok:
		return "the document does not lex"
	case len(toks) == 0:
		return "an empty document"
	}
	brace, paren, aliases := 0, 0, 0
	for i, t := range toks {
		prev, next, next2 := "", "", ""
		if i > 0 {
			prev = toks[i-1].text
		}
		if i+1 < len(toks) {
			next = toks[i+1].text
		}
		if i+2 < len(toks) {
			next2 = toks[i+2].text
		}
		switch t.text {
		case "{":
			brace++
			continue
		case "}":
			brace--
			continue
		case "(":
			paren++
			continue
		case ")":
			paren--
			continue
		}
		if !t.name || paren > 0 {
			continue
		}
		if brace == 0 {
			// A definition starts the document or follows a closing brace.
			if (i == 0 || prev == "}") && (t.text == "mutation" || t.text == "subscription") {
				return "a " + t.text + " operation"
			}
			continue
		}
		switch {
		case prev == "$" || prev == "@" || prev == "...":
			// a variable, a directive, a fragment spread or "on" of an inline fragment
		case prev == "on" && i >= 2 && toks[i-2].text == "...":
			// the type condition of an inline fragment
		case next == ":":
			if next2 != t.text {
				aliases++
			}
		case !demoFieldNames[t.text]:
			return "selects field " + t.text
		}
	}
	if aliases > 10 {
		return "more than 10 aliases"
	}
	return ""
}

type gqlToken struct {
	text string
	name bool
}

// gqlLex splits a GraphQL document into names and punctuators, dropping ignored tokens
// (whitespace, commas, BOMs, comments) and turning strings and numbers into placeholders.
func gqlLex(s string) ([]gqlToken, bool) {
	var toks []gqlToken
	isName := func(c byte, first bool) bool {
		return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',':
			i++
		case strings.HasPrefix(s[i:], "\uFEFF"):
			i += len("\uFEFF")
		case c == '#':
			for i < len(s) && s[i] != '\n' && s[i] != '\r' {
				i++
			}
		case strings.HasPrefix(s[i:], `"""`):
			end := -1
			for j := i + 3; j+3 <= len(s); j++ {
				if strings.HasPrefix(s[j:], `\"""`) {
					j += 3
					continue
				}
				if strings.HasPrefix(s[j:], `"""`) {
					end = j
					break
				}
			}
			if end < 0 {
				return nil, false
			}
			toks, i = append(toks, gqlToken{text: `"`}), end+3
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
				} else if s[j] == '\n' || s[j] == '\r' {
					return nil, false
				}
			}
			if j >= len(s) {
				return nil, false
			}
			toks, i = append(toks, gqlToken{text: `"`}), j+1
		case c == '-' || '0' <= c && c <= '9':
			j := i + 1
			for j < len(s) && strings.IndexByte("0123456789.eE+-", s[j]) >= 0 {
				j++
			}
			toks, i = append(toks, gqlToken{text: "0"}), j
		case isName(c, true):
			j := i + 1
			for j < len(s) && isName(s[j], false) {
				j++
			}
			toks, i = append(toks, gqlToken{text: s[i:j], name: true}), j
		case strings.HasPrefix(s[i:], "..."):
			toks, i = append(toks, gqlToken{text: "..."}), i+3
		case strings.IndexByte("!$&():=@[]{|}", c) >= 0:
			toks, i = append(toks, gqlToken{text: s[i : i+1]}), i+1
		default:
			return nil, false
		}
	}
	return toks, true
}

// TestDemoOracle holds the oracle to the testdata: it accepts every allowed case, and objects to
// every case denied for its body's content or its GraphQL operation or fields (the limits it
// does not model, like depth, it may let pass).
func TestDemoOracle(t *testing.T) {
	for _, c := range loadCases(t) {
		if c.want == nil {
			continue
		}
		h := c.req.GetAttributes().GetRequest().GetHttp()
		ct, n := "", 0
		method, host, path := h.GetMethod(), h.GetHost(), h.GetPath()
		for _, kv := range requestHeaders(t, c.req) {
			switch {
			case kv[0] == "content-type":
				ct, n = kv[1], n+1
			case kv[0] == ":method" && method == "":
				method = kv[1]
			case kv[0] == ":authority" && host == "":
				host = kv[1]
			case kv[0] == ":path" && path == "":
				path = kv[1]
			}
		}
		name := ""
		if n == 1 {
			name = "content-type"
		}
		body := h.GetRawBody()
		if len(body) == 0 {
			body = []byte(h.GetBody())
		}
		why := demoOracle(c.req.GetAttributes().GetSource().GetPrincipal(), method, host, path,
			c.want.Rule, name, ct, body)
		switch c.want.Code {
		case "allowed":
			if why != "" {
				t.Errorf("%s: allowed, but the oracle objects: %s", c.name, why)
			}
		case "graphql_operation", "graphql_field", "body_malformed", "body_schema":
			if why == "" {
				t.Errorf("%s: denied with %s, but the oracle has no objection", c.name, c.want.Code)
			}
		}
	}
}
