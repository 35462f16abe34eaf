package openapi

import (
	"os"
	"testing"
)

// maxFuzzDocument bounds the documents FuzzRead reads. When an input finds new coverage, the
// fuzzer minimizes it by trying to remove every span of its bytes, a number of runs that grows
// with the square of its length, each a whole read of a document (about a millisecond): one
// document of a few kilobytes keeps a run of 20,000 inputs minimizing for the full minute
// allowed, and several stall it for minutes. Small seeds, and no input longer than this, keep
// each minimization within seconds; what a longer document adds is more of the structures the
// small ones already exercise.
const maxFuzzDocument = 512

// FuzzRead feeds documents to the reader: it must refuse what it cannot read with an error or
// an operation's problem, never panic, and every schema it points at must compile or fail to.
func FuzzRead(f *testing.F) {
	const head = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /a/{id}:\n    post:\n      operationId: a\n"
	const ok = "      responses: {'200': {description: ok}}\n"
	f.Add(head+"      parameters:\n        - {name: id, in: path, required: true, schema: {type: string, pattern: '^[0-9]+$', maxLength: 12}}\n"+
		"        - {name: n, in: query, schema: {type: integer, minimum: 1, exclusiveMinimum: true, nullable: true}}\n"+ok, false)
	f.Add(head+"      parameters:\n        - {name: id, in: path, required: true, style: label, schema: {type: array, maxItems: 3, items: {type: integer}}}\n"+
		"        - {name: t, in: query, explode: false, schema: {type: array, uniqueItems: true, items: {type: string, enum: [x, y]}}}\n"+ok, false)
	f.Add(head+"      parameters:\n        - {name: f, in: query, style: deepObject, schema: {type: object, additionalProperties: false, properties: {s: {type: string}}}}\n"+
		"        - {name: w, in: query, style: spaceDelimited, schema: {type: array, items: {type: number}}}\n"+ok, false)
	f.Add(head+"      requestBody: {required: true, content: {application/json: {schema: {$ref: '#/components/schemas/S'}}}}\n"+ok+
		"components:\n  schemas:\n    S: {type: object, properties: {next: {$ref: '#/components/schemas/S'}}}\n", false)
	f.Add(`{"openapi":"3.1.0","info":{"title":"t","version":"1"},"servers":[{"url":"https://h.example/api"}],"paths":{"/a":{"get":{"operationId":"a",`+
		`"x-agentauthz-approval":{"reason":"r"},"parameters":[{"name":"q","in":"query","required":true,"schema":{"type":["string","null"],"format":"uuid"}}],`+
		`"responses":{"200":{"description":"x"}}}}}}`, true)
	f.Add("openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths: {/a/{b}: {get: {parameters: [{name: b, in: path, required: true, schema: {$ref: '#'}}], responses: {'200': {description: x}}}}}\n", false)
	f.Add(`{"openapi":"3.0.0","info":{"title":"t","version":"1"},"paths":{"/a":{"post":{"requestBody":{"content":{"application/json":{"schema":{"$ref":"#/paths"}}}},"responses":{"200":{"description":"x"}}}}}}`, true)
	f.Fuzz(func(t *testing.T, doc string, asJSON bool) {
		if len(doc) > maxFuzzDocument {
			return
		}
		name := "api.yaml"
		if asJSON {
			name = "api.json"
		}
		d, err := Read(name, "", func(n string) ([]byte, error) {
			if n == name {
				return []byte(doc), nil
			}
			return nil, os.ErrNotExist
		})
		if err != nil {
			return
		}
		for _, op := range d.Operations {
			_ = d.Contract(op)
			if op.Problem != "" {
				continue
			}
			for _, p := range op.Params {
				if p.Value.Extra {
					_, _ = d.Schema(p.Value.Schema)
				}
			}
			if op.Body != nil && op.Body.JSON != nil {
				_, _ = d.Schema(*op.Body.JSON)
			}
		}
	})
}
