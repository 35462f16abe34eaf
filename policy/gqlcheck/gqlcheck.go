// Package gqlcheck allowlists GraphQL requests from AI agents: read-only reporting queries
// against one schema, and only the fields each agent may read.
//
// The threat is a prompt-injected agent that may only run approved queries and tries to mutate,
// reach fields it may not see (PII) or exhaust the upstream. A Checker is compiled once from a
// schema and limits (Compile); each agent's field allowlist is compiled once against it
// (Checker.Fields). Checking a request parses and validates only the request's document.
//
// A request is allowed only if all of these hold, checked in this order (the first failure
// decides the Result's code):
//
//  1. The envelope is a strict JSON object (strictjson: no duplicate keys, trailing data or
//     invalid UTF-8) with only query, operationName, variables and extensions; extensions may
//     only hold persistedQuery. Otherwise CodeBodyMalformed or CodeBodySchema (for a GET,
//     CodeQueryInvalid). A JSON array is a batch: refused with CodeGraphQLLimit unless
//     AllowBatch, and then every entry is checked and the first refused entry decides.
//  2. The document has at most MaxTokens tokens, counted with gqlparser's lexer before parsing
//     (comments count): CodeGraphQLLimit.
//  3. It parses: CodeGraphQLInvalid.
//  4. Every operation in the document, not only the selected one, is of an allowed type; a GET
//     never runs a mutation: CodeGraphQLOperation.
//  5. In every operation, fields nest at most MaxDepth deep and at most MaxRootFields fields are
//     selected at the root; all operations together select at most MaxAliases aliased fields
//     and repeat a response key of a selection set at most MaxRepeatedFields times. Fragments
//     count as expanded where they are spread. These are measured before validation, whose
//     cost they bound: CodeGraphQLLimit.
//  6. It validates against the schema, operationName names one of its operations (or the
//     document has exactly one), and no variable definition carries a directive (the
//     normalised form used for persisted ids drops them): CodeGraphQLInvalid.
//  7. With PersistedOnly, the document's normalised id (PersistedID) is on the Persisted list:
//     CodeGraphQLNotPersisted. An extensions.persistedQuery.sha256Hash must match the
//     document, as its normalised id or as the SHA-256 of the query text sent:
//     CodeGraphQLInvalid.
//  8. Every selected field, through aliases and fragments, is in the agent's FieldSet as
//     "ParentType.field", the parent being the type the field is selected on (an interface
//     field selected on the interface is "Interface.field"). __typename is always allowed,
//     __schema and __type only with AllowIntrospection: CodeGraphQLField.
//  9. The variables are an object, declare nothing the operation does not, and fit the declared
//     types (validator.VariableValues): CodeGraphQLInvalid.
//  10. Every field with argument rules (Config.Arguments), in every operation, through aliases
//     and fragments, takes only the arguments the rules name, each within its rule: literals,
//     variables' values (a variable not sent takes its default), and for an argument not given
//     the schema's default, which the API would use: CodeGraphQLArgument.
//
// Persisted operations are checked like any other: being on the list never skips a rule.
// Messages never quote variable values or the document; they name fields, types and line:column
// positions. gqlparser's parse and validation messages are passed on (they may quote a name or a
// literal of the document), clipped to 160 bytes, at most 16 violations per result.
package gqlcheck

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// Config describes one GraphQL API. Zero limits take the defaults.
type Config struct {
	SchemaName string   // for error messages, e.g. "bi.graphql"
	SchemaSDL  string   // SDL source
	Operations []string // allowed operation types: "query", "mutation", "subscription"; empty means ["query"]
	AllowBatch bool     // accept a JSON array of requests; every element is checked
	MaxBatch   int      // max elements of a batch (default 10)
	// Limits; 0 takes the defaults 10, 10, 10, 2000. A negative MaxAliases allows no alias.
	MaxDepth, MaxAliases, MaxRootFields, MaxTokens int
	AllowIntrospection                             bool     // __schema and __type (anywhere); __typename is always allowed
	Persisted                                      []string // allowlist of persisted operations: lower-case hex SHA-256 of the normalised document
	PersistedOnly                                  bool     // only persisted operations are accepted
	MaxBodyDepth                                   int      // JSON nesting limit for the envelope/variables, default strictjson.DefaultMaxDepth
	// Arguments are rules for the arguments of fields; a problem with one is an *ArgumentError.
	Arguments []FieldArguments
}

// Defaults for zero limits.
const (
	DefaultMaxBatch      = 10
	DefaultMaxDepth      = 10
	DefaultMaxAliases    = 10
	DefaultMaxRootFields = 10
	DefaultMaxTokens     = 2000
)

// maxViolations bounds what one Result lists.
const maxViolations = 16

// Checker checks requests against one compiled Config. It is safe for concurrent use.
type Checker struct {
	name                 string
	schema               *ast.Schema
	mutation, subscribe  bool // query is always allowed
	allowBatch           bool
	maxBatch, maxDepth   int
	maxAliases, maxRoots int
	maxTokens, maxBody   int
	introspection        bool
	persisted            map[string]struct{}
	persistedOnly        bool
	// arguments are the argument rules of a field selected on a type (compileArguments).
	arguments map[fieldKey][]*fieldRules
}

// Result is the outcome of a check. The zero value allows.
type Result struct {
	Code       decision.Code        // "" when allowed
	Detail     string               // one sentence an LLM agent can act on
	Violations []decision.Violation // Field like "graphql.Customer.email" or "graphql.query", Rule, short Message
	Cause      error                // on internal_error, what went wrong, for the operators' log
}

// OK reports whether the request is allowed.
func (r Result) OK() bool { return r.Code == "" }

func deny(code decision.Code, detail string, vs ...decision.Violation) Result {
	if len(vs) > maxViolations {
		vs = vs[:maxViolations]
	}
	return Result{Code: code, Detail: detail, Violations: vs}
}

// Compile checks cfg and compiles the schema. The error lists every problem found.
func Compile(cfg Config) (*Checker, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	c := &Checker{name: cfg.SchemaName, allowBatch: cfg.AllowBatch, introspection: cfg.AllowIntrospection,
		persistedOnly: cfg.PersistedOnly}
	if c.name == "" {
		c.name = "schema.graphql"
	}
	if strings.TrimSpace(cfg.SchemaSDL) == "" {
		bad("%s: the schema is empty", c.name)
	} else {
		schema, err := validator.LoadSchema(validator.Prelude, &ast.Source{Name: c.name, Input: cfg.SchemaSDL})
		switch {
		case err != nil:
			bad("%w", err) // gqlerror prints name:line:col: message
		case schema.Query == nil:
			bad("%s: the schema has no query type", c.name)
		default:
			c.schema = schema
		}
	}
	for _, op := range cfg.Operations {
		switch op {
		case "query":
		case "mutation":
			c.mutation = true
		case "subscription":
			c.subscribe = true
		default:
			bad("operations: %q is not query, mutation or subscription", clip(op, 32))
		}
	}
	limit := func(name string, v, def int, dst *int) {
		switch {
		case v < 0:
			bad("%s: %d is negative", name, v)
		case v == 0:
			*dst = def
		default:
			*dst = v
		}
	}
	limit("max_batch", cfg.MaxBatch, DefaultMaxBatch, &c.maxBatch)
	limit("max_depth", cfg.MaxDepth, DefaultMaxDepth, &c.maxDepth)
	limit("max_root_fields", cfg.MaxRootFields, DefaultMaxRootFields, &c.maxRoots)
	limit("max_tokens", cfg.MaxTokens, DefaultMaxTokens, &c.maxTokens)
	limit("max_body_depth", cfg.MaxBodyDepth, strictjson.DefaultMaxDepth, &c.maxBody)
	switch {
	case cfg.MaxAliases < 0:
		c.maxAliases = 0
	case cfg.MaxAliases == 0:
		c.maxAliases = DefaultMaxAliases
	default:
		c.maxAliases = cfg.MaxAliases
	}
	if len(cfg.Persisted) > 0 {
		c.persisted = make(map[string]struct{}, len(cfg.Persisted))
	}
	for i, id := range cfg.Persisted {
		if !isHash(id) {
			bad("persisted[%d]: %q is not a lower-case hex SHA-256", i, clip(id, 72))
			continue
		}
		c.persisted[id] = struct{}{}
	}
	if cfg.PersistedOnly && len(cfg.Persisted) == 0 {
		bad("persisted_only: no persisted operation is listed, so every request would be refused")
	}
	if c.schema != nil {
		errs = append(errs, c.compileArguments(cfg.Arguments)...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// PersistedID returns the id of a document for a Persisted list: the lower-case hex SHA-256 of
// the document parsed and printed again by gqlparser's formatter (default options), so that
// whitespace, commas and comments do not change it. The document is not validated.
func PersistedID(document string) (string, error) {
	doc, err := parser.ParseQuery(&ast.Source{Name: "document", Input: document})
	if err != nil {
		return "", err
	}
	return normalisedID(doc), nil
}

func normalisedID(doc *ast.QueryDocument) string {
	var b strings.Builder
	formatter.NewFormatter(&b).FormatQueryDocument(doc)
	return sha256Hex(b.String())
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// clip shortens s to at most n bytes of valid UTF-8 without control characters, for messages.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && s[i]&0xC0 == 0x80 { // do not cut a rune in half
		i--
	}
	return s[:i] + "…"
}
