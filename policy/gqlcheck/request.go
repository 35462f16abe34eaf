package gqlcheck

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// CheckBody checks a POST body (application/json): {"query": string, "operationName":
// string|null, "variables": object|null, "extensions": object|null} or, with AllowBatch, a
// JSON array of those. The body is read with strictjson (duplicate keys, trailing data,
// invalid UTF-8 and nesting deeper than MaxBodyDepth are refused with CodeBodyMalformed); an
// unknown member, a member of the wrong type or a missing query is CodeBodySchema. A batch when
// batching is off, or longer than MaxBatch, is CodeGraphQLLimit; an empty batch is
// CodeBodySchema. In a batch the first refused entry decides, and the Detail names it.
func (c *Checker) CheckBody(body []byte, fields *FieldSet) Result {
	v, err := strictjson.Parse(body, c.maxBody)
	return c.CheckBodyValue(v, err, fields)
}

// MaxBodyDepth is how deeply a POST body may nest.
func (c *Checker) MaxBodyDepth() int { return c.maxBody }

// CheckBodyValue is CheckBody for a body read already: v and err are what strictjson.Parse or
// strictjson.ParseShared returned for it, read with MaxBodyDepth. v is only read, never
// modified, so that other readers of the body may share it.
func (c *Checker) CheckBodyValue(v any, err error, fields *FieldSet) Result {
	if err != nil {
		vio := decision.Violation{Field: "body", Rule: "syntax", Message: "is not valid JSON"}
		if e, ok := err.(*strictjson.Error); ok {
			vio.Rule, vio.Message = e.Rule, e.Message
			if e.Pointer != "" { // "body" and the JSON pointer: "body/query"
				vio.Field = "body" + clip(e.Pointer, 64)
			}
		}
		return deny(decision.CodeBodyMalformed,
			"The body is not strict JSON (one value, UTF-8, no duplicate keys); fix it and retry.", vio)
	}
	batch, isBatch := v.([]any)
	if !isBatch {
		r, res := c.envelope(v, "body")
		if !res.OK() {
			return res
		}
		return c.check(&r, fields)
	}
	switch {
	case !c.allowBatch:
		return deny(decision.CodeGraphQLLimit, "Batched requests are not accepted here; send one request object per call.",
			decision.Violation{Field: "graphql.batch", Rule: "batch", Message: "batching is not allowed"})
	case len(batch) == 0:
		return deny(decision.CodeBodySchema, "The batch is empty; send at least one request.",
			decision.Violation{Field: "body", Rule: "min_items", Message: "must hold at least one request"})
	case len(batch) > c.maxBatch:
		return deny(decision.CodeGraphQLLimit, "The batch holds "+strconv.Itoa(len(batch))+" requests; send at most "+
			strconv.Itoa(c.maxBatch)+" per call.",
			decision.Violation{Field: "graphql.batch", Rule: "max_batch", Message: "must hold at most " + strconv.Itoa(c.maxBatch) + " requests"})
	}
	for i, e := range batch {
		r, res := c.envelope(e, "body["+strconv.Itoa(i)+"]")
		if res.OK() {
			res = c.check(&r, fields)
		}
		if !res.OK() {
			res.Detail = "Batch entry " + strconv.Itoa(i+1) + " of " + strconv.Itoa(len(batch)) + ": " + res.Detail
			return res
		}
	}
	return Result{}
}

// CheckParams checks a GET request's decoded query parameters query, operationName and
// variables (JSON text, or "" for none) with the same rules as CheckBody, except that a GET never
// runs a mutation. A missing query, parameters that are not UTF-8 or variables that are not a
// strict JSON object are CodeQueryInvalid.
func (c *Checker) CheckParams(query, operationName, variables string, fields *FieldSet) Result {
	bad := func(param, rule, msg string) Result {
		return deny(decision.CodeQueryInvalid, "The query parameter "+param+" "+msg+"; fix it and retry.",
			decision.Violation{Field: "query." + param, Rule: rule, Message: msg})
	}
	switch {
	case query == "":
		return bad("query", "required", "is required")
	case !utf8.ValidString(query):
		return bad("query", "invalid_utf8", "must be UTF-8")
	case !utf8.ValidString(operationName):
		return bad("operationName", "invalid_utf8", "must be UTF-8")
	}
	r := request{query: query, operationName: operationName, get: true}
	if variables != "" {
		v, err := strictjson.Parse([]byte(variables), c.maxBody)
		if err != nil {
			rule, msg := "syntax", "is not strict JSON"
			if e, ok := err.(*strictjson.Error); ok {
				rule, msg = e.Rule, "is not strict JSON: "+e.Message
			}
			return bad("variables", rule, msg)
		}
		switch v := v.(type) {
		case map[string]any:
			r.variables = v
		case nil:
		default:
			return bad("variables", "type", "must be a JSON object")
		}
	}
	return c.check(&r, fields)
}

// envelope reads one request object. at names it in violations: "body" or "body[2]".
func (c *Checker) envelope(v any, at string) (request, Result) {
	var r request
	m, ok := v.(map[string]any)
	if !ok {
		return r, schemaError(at, "type", "must be a JSON object")
	}
	var unknown []string
	for k := range m {
		switch k {
		case "query", "operationName", "variables", "extensions":
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		vs := make([]decision.Violation, len(unknown))
		for i, k := range unknown {
			vs[i] = decision.Violation{Field: at + "." + clip(k, 64), Rule: "unknown", Message: "is not a member of a GraphQL request"}
		}
		return r, deny(decision.CodeBodySchema,
			"The request object may only hold query, operationName, variables and extensions; remove the others.", vs...)
	}
	switch q := m["query"].(type) {
	case string:
		if q == "" {
			return r, schemaError(at+".query", "required", "must not be empty")
		}
		r.query = q
	case nil:
		return r, schemaError(at+".query", "required", "is required (send the full document; hash-only persisted queries are not resolved)")
	default:
		return r, schemaError(at+".query", "type", "must be a string")
	}
	switch n := m["operationName"].(type) {
	case string:
		r.operationName = n
	case nil:
	default:
		return r, schemaError(at+".operationName", "type", "must be a string or null")
	}
	switch vars := m["variables"].(type) {
	case map[string]any:
		r.variables = vars
	case nil:
	default:
		return r, schemaError(at+".variables", "type", "must be an object or null")
	}
	hash, res := persistedHash(m["extensions"], at+".extensions")
	r.hash = hash
	return r, res
}

// persistedHash reads extensions, which may only hold an Apollo-style persistedQuery:
// {"version": 1, "sha256Hash": "<64 lower-case hex>"}.
func persistedHash(ext any, at string) (string, Result) {
	if ext == nil {
		return "", Result{}
	}
	m, ok := ext.(map[string]any)
	if !ok {
		return "", schemaError(at, "type", "must be an object or null")
	}
	for k := range m {
		if k != "persistedQuery" {
			return "", schemaError(at+"."+clip(k, 64), "unknown", "is not an accepted extension (only persistedQuery)")
		}
	}
	pq, ok := m["persistedQuery"].(map[string]any)
	if !ok {
		return "", schemaError(at+".persistedQuery", "type", "must be an object")
	}
	for k := range pq {
		if k != "version" && k != "sha256Hash" {
			return "", schemaError(at+".persistedQuery."+clip(k, 64), "unknown", "is not a member of persistedQuery")
		}
	}
	if v, ok := pq["version"].(json.Number); !ok || v != "1" {
		return "", schemaError(at+".persistedQuery.version", "enum", "must be 1")
	}
	h, ok := pq["sha256Hash"].(string)
	if !ok || !isHash(h) {
		return "", schemaError(at+".persistedQuery.sha256Hash", "pattern", "must be a lower-case hex SHA-256")
	}
	return h, Result{}
}

func schemaError(field, rule, msg string) Result {
	return deny(decision.CodeBodySchema, "The GraphQL request member "+field+" "+msg+"; fix it and retry.",
		decision.Violation{Field: field, Rule: rule, Message: msg})
}
