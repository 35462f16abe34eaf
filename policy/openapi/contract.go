package openapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
)

// Contract is what a route made from an operation enforces, part by part ("path parameter id",
// "query parameter limit", "request body", ...), each as a digest of its schema with every $ref
// replaced by what it names. Two versions of a document give an operation the same contract
// when its route would decide every request the same way.
type Contract map[string]string

// Contract returns an operation's contract.
func (d *Document) Contract(op *Operation) Contract {
	c := Contract{"route": op.Method + " " + op.Path}
	memo := map[Location]string{}
	for _, p := range op.Params {
		if p.In == "header" || p.In == "cookie" {
			continue
		}
		part := p.In + " parameter " + p.Name
		c[part] = digest(p.Required, p.Style, p.Explode, d.canonical(p.Schema, memo, map[Location]bool{}))
	}
	if op.Body != nil {
		schema := ""
		if op.Body.JSON != nil {
			schema = d.canonical(*op.Body.JSON, memo, map[Location]bool{})
		}
		form := ""
		if op.Body.Form != nil {
			form = d.canonical(op.Body.FormSchema, memo, map[Location]bool{})
		}
		c["request body"] = digest(op.Body.Required, op.Body.MediaTypes, schema, form)
	}
	if op.Approval != nil {
		c["x-agentauthz-approval"] = digest(op.Approval.Reason)
	}
	if op.Problem != "" {
		c["problem"] = op.Problem
	}
	return c
}

// Changed lists the parts whose contract differs between an older contract and this one.
func (c Contract) Changed(old Contract) []string {
	var out []string
	for k, v := range c {
		if old[k] != v {
			out = append(out, k)
		}
	}
	for k := range old {
		if _, ok := c[k]; !ok {
			out = append(out, k+" (removed)")
		}
	}
	sort.Strings(out)
	return out
}

func digest(parts ...any) string {
	b, _ := json.Marshal(parts)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// canonical digests the JSON value at l with every $ref replaced by the digest of what it
// names; a $ref back into a schema being digested stands for itself.
func (d *Document) canonical(l Location, memo map[Location]string, open map[Location]bool) string {
	if s, ok := memo[l]; ok {
		return s
	}
	if open[l] {
		return "cycle:" + l.Pointer
	}
	open[l] = true
	defer delete(open, l)
	v, ok := d.value(l)
	if !ok {
		return "missing"
	}
	s := digest(d.inline(l, v, memo, open))
	memo[l] = s
	return s
}

// inline copies v (found at l) with each $ref replaced by the digest of its target.
func (d *Document) inline(l Location, v any, memo map[Location]string, open map[Location]bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, c := range x {
			if ref, ok := c.(string); ok && k == "$ref" {
				if target, err := d.resolve(l, ref); err == nil {
					out[k] = d.canonical(target, memo, open)
					continue
				}
			}
			out[k] = d.inline(l.child(k), c, memo, open)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, c := range x {
			out[i] = d.inline(l.child(jsonIndex(i)), c, memo, open)
		}
		return out
	}
	return v
}

func jsonIndex(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
