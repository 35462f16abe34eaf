package helpdeskmcp_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite ../policy/helpdesk-mcp.tools.json from the server's tools/list (review the diff by hand)")

// snapshot is the tools/list result kept beside the demo policy, which imports each tool's
// input schema from it.
var snapshot = filepath.Join("..", "policy", "helpdesk-mcp.tools.json")

// listedTools is the tools of the server's tools/list answer, as {"tools": [...]}: the result
// without its cache-control fields (ttlMs, cacheScope), which say nothing about the tools.
func listedTools(t *testing.T) []byte {
	t.Helper()
	s := start(t)
	a := s.post(t, "Bearer "+token, "2025-11-25", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if a.status != 200 || a.msg.Error != nil {
		t.Fatalf("tools/list: %d %s", a.status, a.raw)
	}
	var result map[string]json.RawMessage
	if err := json.Unmarshal(a.msg.Result, &result); err != nil {
		t.Fatal(err)
	}
	if result["tools"] == nil || result["nextCursor"] != nil {
		t.Fatalf("tools/list answered %s, not every tool on one page", a.msg.Result)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, []byte(`{"tools":`+string(result["tools"])+`}`), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func TestToolsSnapshot(t *testing.T) {
	got := listedTools(t)
	if *update {
		if err := os.WriteFile(snapshot, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(snapshot)
	if err != nil {
		t.Fatalf("%v (go test ./internal/demo/helpdeskmcp -run TestToolsSnapshot -update writes it)", err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: %v", snapshot, err)
	}
	if diff := cmp.Diff(w, g); diff != "" {
		t.Errorf("the server lists other tools than %s (-file +server); if the change is meant, run go test ./internal/demo/helpdeskmcp -run TestToolsSnapshot -update and review the policy that imports it:\n%s", snapshot, diff)
	}
}

// The snapshot lists exactly the four tools, each input schema closed to other arguments.
func TestSnapshotSchemasAreClosed(t *testing.T) {
	var snap struct {
		Tools []struct {
			Name        string         `json:"name"`
			InputSchema map[string]any `json:"inputSchema"`
		} `json:"tools"`
	}
	data, err := os.ReadFile(snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range snap.Tools {
		names = append(names, tool.Name)
		s := tool.InputSchema
		if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" || s["type"] != "object" || s["additionalProperties"] != false {
			t.Errorf("%s: input schema %v is not a closed 2020-12 object schema", tool.Name, s)
		}
	}
	if diff := cmp.Diff([]string{"add_comment", "get_ticket", "list_tickets", "reset_password"}, names); diff != "" {
		t.Errorf("tools (-want +snapshot):\n%s", diff)
	}
}
