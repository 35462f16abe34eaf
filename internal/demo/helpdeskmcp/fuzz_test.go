package helpdeskmcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
	"github.com/agentauthz/agentauthz/internal/demo/helpdeskmcp"
	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// FuzzToolArguments calls the tools with arbitrary arguments that the front proxy's JSON reader
// lets through. The server answers every call with a tool result, never a failure; it runs
// every call the snapshot's schema accepts, as the policy compiles it; and it refuses every
// call that schema refuses, but for numbers that its validator, reading them as float64,
// cannot tell from a whole number in range (100.0000000000000001 is 100 to it).
func FuzzToolArguments(f *testing.F) {
	for _, c := range argumentCases {
		f.Add(c.tool, c.args)
	}
	schemas := snapshotSchemas(f)
	ctx := context.Background()
	client := mcp.NewClient(&mcp.Implementation{Name: "fuzz", Version: "1"}, nil)
	f.Fuzz(func(t *testing.T, tool, args string) {
		schema, ok := schemas[tool]
		if !ok {
			return
		}
		v, err := strictjson.Parse([]byte(args), strictjson.DefaultMaxDepth)
		if err != nil {
			return // the front proxy refuses it before any schema
		}
		if _, ok := v.(map[string]any); !ok {
			return // arguments are an object, or the call is malformed
		}
		// A fresh helpdesk each time: the comments of earlier calls would make every later
		// get_ticket longer.
		api, err := helpdesk.New(helpdesk.Config{Token: token})
		if err != nil {
			t.Fatal(err)
		}
		st, ct := mcp.NewInMemoryTransports()
		ss, err := helpdeskmcp.New(api, nil).Connect(ctx, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ss.Close()
		cs, err := client.Connect(ctx, ct, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: json.RawMessage(args)})
		if err != nil {
			t.Fatalf("%s %s: %v", tool, args, err)
		}
		text := ""
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				text += tc.Text
			}
		}
		schemaRefused := res.IsError && strings.HasPrefix(text, `validating "arguments"`)
		switch accepted := schema.Validate(v) == nil; {
		case accepted && schemaRefused:
			t.Fatalf("%s %s: the policy's schema accepts it, the server refuses it: %s", tool, args, text)
		case !accepted && !schemaRefused && !acceptedAsFloat64(schema, args):
			t.Fatalf("%s %s: the policy's schema refuses it, the server did not: %v %s", tool, args, res.IsError, text)
		}
	})
}

// acceptedAsFloat64 tells whether schema accepts args once its numbers are read as float64.
func acceptedAsFloat64(schema *jsonschema.Schema, args string) bool {
	var v any
	if err := json.Unmarshal([]byte(args), &v); err != nil {
		return false
	}
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	w, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	return err == nil && schema.Validate(w) == nil
}
