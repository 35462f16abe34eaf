package gqlcheck

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/lexer"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/agentauthz/agentauthz/policy/decision"
)

// request is one GraphQL request, read from a body entry or from GET parameters.
type request struct {
	query         string
	operationName string
	variables     map[string]any // nil when none were sent
	hash          string         // extensions.persistedQuery.sha256Hash, "" when absent
	get           bool
}

// check applies every rule to one request.
func (c *Checker) check(r *request, fields *FieldSet) (res Result) {
	defer func() {
		if p := recover(); p != nil { // a library bug must deny, not crash the server
			res = deny(decision.CodeInternal, "The GraphQL request could not be checked; report this to the operators.",
				decision.Violation{Field: "graphql", Rule: "internal", Message: "could not be checked"})
			res.Cause = fmt.Errorf("graphql check panicked: %v", p)
		}
	}()
	if fields != nil && fields.schema != c.schema {
		res = deny(decision.CodeInternal, "The field allowlist was compiled for another schema; report this to the operators.",
			decision.Violation{Field: "graphql", Rule: "internal", Message: "field allowlist of another schema"})
		res.Cause = errors.New("graphql field allowlist compiled for another schema")
		return res
	}
	src := &ast.Source{Name: "query", Input: r.query}
	if res := c.countTokens(src); !res.OK() {
		return res
	}
	doc, err := parser.ParseQuery(src)
	if err != nil {
		return invalid("The query does not parse", []error{err})
	}
	if len(doc.Operations) == 0 {
		return deny(decision.CodeGraphQLInvalid, "The document has no operation; send one query operation.",
			decision.Violation{Field: "graphql.query", Rule: "required", Message: "has no operation"})
	}
	if res := c.checkOperationTypes(doc, r.get); !res.OK() {
		return res
	}
	if res := c.limits(doc); !res.OK() { // before the validator, whose cost they bound
		return res
	}
	// Validate runs gqlparser's default rules. It is marked deprecated for ValidateWithRules,
	// which does the same but rebuilds and re-sorts the rule list on every call.
	//lint:ignore SA1019 ValidateWithRules re-sorts the rule list on every call, on the request path
	if errs := validator.Validate(c.schema, doc); len(errs) > 0 {
		list := make([]error, len(errs))
		for i, e := range errs {
			list[i] = e
		}
		return invalid("The query does not validate against "+c.name, list)
	}
	op, res := selectOperation(doc, r.operationName)
	if !res.OK() {
		return res
	}
	if res := c.checkPersisted(doc, r); !res.OK() {
		return res
	}
	w := walker{c: c, fields: fields}
	if res := w.document(doc); !res.OK() {
		return res
	}
	if res := c.checkVariables(op, r.variables); !res.OK() {
		return res
	}
	return c.checkArguments(doc, r.variables)
}

// countTokens refuses a document with more than MaxTokens tokens before it is parsed.
func (c *Checker) countTokens(src *ast.Source) Result {
	lx := lexer.New(src)
	for n := 0; ; n++ {
		tok, err := lx.ReadToken()
		if err != nil {
			return invalid("The query does not parse", []error{err})
		}
		if tok.Kind == lexer.EOF {
			return Result{}
		}
		if n == c.maxTokens {
			return deny(decision.CodeGraphQLLimit, "The query has more than "+strconv.Itoa(c.maxTokens)+
				" tokens; send a smaller query.",
				decision.Violation{Field: "graphql.tokens", Rule: "max_tokens",
					Message: "must be at most " + strconv.Itoa(c.maxTokens)})
		}
	}
}

// invalid reports parse or validation errors with their line:column.
func invalid(what string, errs []error) Result {
	vs := make([]decision.Violation, 0, min(len(errs), maxViolations))
	first := ""
	for _, err := range errs {
		if len(vs) == maxViolations {
			break
		}
		v := decision.Violation{Field: "graphql.query", Rule: "syntax", Message: "is not valid GraphQL"}
		var ge *gqlerror.Error
		if errors.As(err, &ge) {
			if ge.Rule != "" {
				v.Rule = ge.Rule
			}
			msg := ge.Message
			if len(ge.Locations) > 0 {
				msg = ge.Locations[0].String() + ": " + msg
			}
			v.Message = clip(msg, 160)
		}
		if first == "" {
			first = v.Message
		}
		vs = append(vs, v)
	}
	return deny(decision.CodeGraphQLInvalid, what+" ("+first+"); fix it and retry.", vs...)
}

// checkOperationTypes refuses a disallowed operation anywhere in the document, whatever
// operationName selects: an upstream might run another operation than the one named.
func (c *Checker) checkOperationTypes(doc *ast.QueryDocument, get bool) Result {
	var vs []decision.Violation
	var seenMutation, seenSubscription bool
	for _, op := range doc.Operations {
		switch op.Operation {
		case ast.Mutation:
			if seenMutation || (c.mutation && !get) {
				continue
			}
			seenMutation = true
			msg := "mutations are not allowed"
			if get && c.mutation {
				msg = "a GET request never runs a mutation"
			}
			vs = append(vs, decision.Violation{Field: "graphql.mutation", Rule: "operation", Message: msg})
		case ast.Subscription:
			if seenSubscription || c.subscribe {
				continue
			}
			seenSubscription = true
			vs = append(vs, decision.Violation{Field: "graphql.subscription", Rule: "operation",
				Message: "subscriptions are not allowed"})
		}
	}
	if len(vs) == 0 {
		return Result{}
	}
	detail := "Only query operations are allowed here; remove every mutation and subscription from the document."
	if c.mutation || c.subscribe {
		detail = "The document holds an operation type this API does not allow (" + vs[0].Message +
			"); remove it from the document."
	}
	return deny(decision.CodeGraphQLOperation, detail, vs...)
}

// selectOperation finds the operation operationName names, or the only one.
func selectOperation(doc *ast.QueryDocument, name string) (*ast.OperationDefinition, Result) {
	if name == "" {
		if len(doc.Operations) == 1 {
			return doc.Operations[0], Result{}
		}
		return nil, deny(decision.CodeGraphQLInvalid,
			"The document holds several operations; name the one to run in operationName.",
			decision.Violation{Field: "graphql.operationName", Rule: "required",
				Message: "is required when the document has several operations"})
	}
	if op := doc.Operations.ForName(name); op != nil {
		return op, Result{}
	}
	return nil, deny(decision.CodeGraphQLInvalid,
		"operationName does not name an operation of the document; use one of its operation names.",
		decision.Violation{Field: "graphql.operationName", Rule: "unknown", Message: "names no operation of the document"})
}

// checkPersisted applies PersistedOnly and checks a persisted-query hash the client sent.
func (c *Checker) checkPersisted(doc *ast.QueryDocument, r *request) Result {
	for _, op := range doc.Operations {
		for _, vd := range op.VariableDefinitions {
			if len(vd.Directives) > 0 { // the formatter drops them: the id would not cover them
				return deny(decision.CodeGraphQLInvalid,
					"Directives on variable definitions are not supported; remove them.",
					decision.Violation{Field: "graphql.variables." + vd.Variable, Rule: "directive",
						Message: "must carry no directive"})
			}
		}
	}
	if !c.persistedOnly && r.hash == "" {
		return Result{}
	}
	id := normalisedID(doc)
	if r.hash != "" && r.hash != id && r.hash != sha256Hex(r.query) {
		return deny(decision.CodeGraphQLInvalid,
			"extensions.persistedQuery.sha256Hash does not match the query sent; send the hash of this query or omit it.",
			decision.Violation{Field: "graphql.extensions.persistedQuery.sha256Hash", Rule: "mismatch",
				Message: "does not match the query"})
	}
	if c.persistedOnly {
		if _, ok := c.persisted[id]; !ok {
			return deny(decision.CodeGraphQLNotPersisted,
				"Only the approved (persisted) operations may run here, and this document is not one of them; "+
					"send one of the approved documents unchanged.",
				decision.Violation{Field: "graphql.query", Rule: "persisted", Message: "is not an approved operation"})
		}
	}
	return Result{}
}

// allow reports whether f may be selected, recording a violation if not, and whether to look
// inside it.
func (w *walker) allow(f *ast.Field) (descend bool) {
	parent := ""
	if f.ObjectDefinition != nil {
		parent = f.ObjectDefinition.Name
	}
	rule, msg := "not_allowed", "is not allowed for this agent"
	switch {
	case w.fields == nil:
	case f.Name == "__typename":
		return true
	case f.Name == "__schema" || f.Name == "__type":
		if w.c.introspection {
			return true
		}
		rule, msg = "introspection", "introspection is not allowed"
		w.violation(parent, f.Name, rule, msg)
		return false
	case strings.HasPrefix(parent, "__"): // only reachable through __schema and __type
		if w.c.introspection {
			return true
		}
		rule, msg = "introspection", "introspection is not allowed"
	case f.Definition == nil || f.ObjectDefinition == nil:
		rule, msg = "unknown", "is not a field of the schema"
	case w.fields.has(parent, f.Name):
		return true
	}
	w.violation(parent, f.Name, rule, msg)
	return true
}

func (w *walker) violation(parent, name, rule, msg string) {
	field := "graphql." + clip(parent, 64) + "." + clip(name, 64)
	if parent == "" {
		field = "graphql." + clip(name, 64)
	}
	if _, dup := w.seen[field]; dup {
		return
	}
	if w.seen == nil {
		w.seen = map[string]struct{}{}
	}
	w.seen[field] = struct{}{}
	w.violations = append(w.violations, decision.Violation{Field: field, Rule: rule, Message: msg})
}
