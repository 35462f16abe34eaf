package helpdeskmcp_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
)

func TestListTickets(t *testing.T) {
	s := start(t)
	r := s.callTool(t, "list_tickets", `{"status":"open","limit":2}`)
	var out struct {
		Tickets []helpdesk.Ticket `json:"tickets"`
	}
	if err := json.Unmarshal(r.StructuredContent, &out); err != nil || r.IsError {
		t.Fatalf("%+v: %v", r, err)
	}
	if len(out.Tickets) != 2 || out.Tickets[0].ID != "4711" || out.Tickets[1].ID != "4712" || out.Tickets[1].Requester != "jdoe" {
		t.Errorf("structured content %s", r.StructuredContent)
	}
	// The text is the structured content as JSON, e-mail and phone included.
	if !sameJSON(r.text(), r.StructuredContent) || !strings.Contains(r.text(), `"requester_email":"jdoe@acme.example"`) {
		t.Errorf("text %q, structured content %s", r.text(), r.StructuredContent)
	}
	// Without arguments: every status, up to the REST API's default of 20.
	if err := json.Unmarshal(s.callTool(t, "list_tickets", `{}`).StructuredContent, &out); err != nil || len(out.Tickets) != 5 {
		t.Errorf("no arguments: %d tickets, %v", len(out.Tickets), err)
	}
	if r := s.callTool(t, "list_tickets", `{"status":"closed"}`); !strings.HasPrefix(r.text(), `{"tickets":[{"id":"4714",`) {
		t.Errorf("closed: %q", r.text())
	}
}

func TestGetTicket(t *testing.T) {
	s := start(t)
	r := s.callTool(t, "get_ticket", `{"id":"4713"}`)
	var tk helpdesk.Ticket
	if err := json.Unmarshal(r.StructuredContent, &tk); err != nil || r.IsError {
		t.Fatalf("%+v: %v", r, err)
	}
	var rest helpdesk.Ticket
	s.rest(t, "GET", "/v1/tickets/4713", "", &rest)
	if tk.Subject != "New laptop for onboarding" || tk.Status != "pending" || !tk.CreatedAt.Equal(rest.CreatedAt) || tk.Requester != rest.Requester ||
		tk.RequesterEmail != "asmith@acme.example" || tk.RequesterEmail != rest.RequesterEmail || tk.RequesterPhone == "" || tk.RequesterPhone != rest.RequesterPhone {
		t.Errorf("MCP %+v, REST %+v", tk, rest)
	}
	if !sameJSON(r.text(), r.StructuredContent) {
		t.Errorf("text %q, structured content %s", r.text(), r.StructuredContent)
	}
	if r := s.callTool(t, "get_ticket", `{"id":"9999"}`); !r.IsError || r.text() != "there is no ticket 9999" || r.StructuredContent != nil {
		t.Errorf("unknown ticket: %+v", r)
	}
}

// A comment added over MCP is on the ticket the REST API serves, and one added over REST is on
// the ticket the MCP server serves.
func TestCommentsAreShared(t *testing.T) {
	s := start(t)
	r := s.callTool(t, "add_comment", `{"ticket_id":"4712","body":"Called jdoe back; reset requested."}`)
	var c helpdesk.Comment
	if err := json.Unmarshal(r.StructuredContent, &c); err != nil || r.IsError || c.ID != 1 || c.Body != "Called jdoe back; reset requested." {
		t.Fatalf("%+v %+v: %v", r, c, err)
	}
	if r.text() != "Comment 1 added to ticket #4712." {
		t.Errorf("text %q", r.text())
	}
	var rest helpdesk.Ticket
	s.rest(t, "GET", "/v1/tickets/4712", "", &rest)
	if len(rest.Comments) != 1 || rest.Comments[0].Body != c.Body {
		t.Errorf("REST shows comments %+v", rest.Comments)
	}
	if status := s.rest(t, "POST", "/v1/tickets/4712/comments", `{"body":"Over REST."}`, nil); status != http.StatusCreated {
		t.Fatalf("REST comment: %d", status)
	}
	got := s.callTool(t, "get_ticket", `{"id":"4712"}`)
	var tk helpdesk.Ticket
	if err := json.Unmarshal(got.StructuredContent, &tk); err != nil || len(tk.Comments) != 2 || tk.Comments[1].Body != "Over REST." {
		t.Errorf("MCP shows comments %+v (%v)", tk.Comments, err)
	}
	if !sameJSON(got.text(), got.StructuredContent) {
		t.Errorf("text %q", got.text())
	}
}

func TestResetPassword(t *testing.T) {
	s := start(t)
	r := s.callTool(t, "reset_password", `{"username":"jdoe","reason":"Locked out after travel; identity verified"}`)
	var out map[string]any
	if err := json.Unmarshal(r.StructuredContent, &out); err != nil || r.IsError {
		t.Fatalf("%+v: %v", r, err)
	}
	if out["username"] != "jdoe" || out["status"] != "reset" || out["sessions_revoked"] != true || out["notified"] != true || out["reset_at"] == nil {
		t.Errorf("structured content %v", out)
	}
	if r.text() != "jdoe's password was reset; every session of theirs was ended and they were told by e-mail." {
		t.Errorf("text %q", r.text())
	}
	resets := s.api.Resets()
	if len(resets) != 1 || resets[0].Username != "jdoe" || resets[0].Reason != "Locked out after travel; identity verified" || !resets[0].NotifyUser {
		t.Errorf("resets %+v", resets)
	}
	if r := s.callTool(t, "reset_password", `{"username":"nobody","reason":"reason enough"}`); !r.IsError || r.text() != "there is no user nobody" {
		t.Errorf("unknown user: %+v", r)
	}
	if !strings.Contains(s.logs.String(), `"msg":"tool call","tool":"reset_password","outcome":"ok"`) ||
		!strings.Contains(s.logs.String(), `"tool":"reset_password","outcome":"tool_error"`) {
		t.Errorf("tool calls are not logged:\n%s", s.logs)
	}
}

// verdict is what the server makes of a call's arguments.
type verdict int

const (
	ok         verdict = iota // the tool runs and succeeds
	schemaMiss                // the input schema refuses the arguments; the tool never runs
	toolError                 // the schema accepts them, and the tool refuses (unknown id, blank text)
)

// argumentCases hold every limit of every tool at and beyond its bound.
var argumentCases = []struct {
	tool, args string
	want       verdict
}{
	{"list_tickets", `{}`, ok},
	{"list_tickets", `{"status":"open"}`, ok},
	{"list_tickets", `{"status":"pending"}`, ok},
	{"list_tickets", `{"status":"closed"}`, ok},
	{"list_tickets", `{"status":"open","limit":5}`, ok},
	{"list_tickets", `{"limit":1}`, ok},
	{"list_tickets", `{"limit":100}`, ok},
	{"list_tickets", `{"limit":5.0}`, ok}, // a whole number is an integer to JSON Schema
	{"list_tickets", `{"limit":0}`, schemaMiss},
	{"list_tickets", `{"limit":101}`, schemaMiss},
	{"list_tickets", `{"limit":5000}`, schemaMiss},
	{"list_tickets", `{"limit":-1}`, schemaMiss},
	{"list_tickets", `{"limit":2.5}`, schemaMiss},
	{"list_tickets", `{"limit":"5"}`, schemaMiss},
	{"list_tickets", `{"limit":null}`, schemaMiss},
	{"list_tickets", `{"status":"all"}`, schemaMiss},
	{"list_tickets", `{"status":"OPEN"}`, schemaMiss},
	{"list_tickets", `{"status":""}`, schemaMiss},
	{"list_tickets", `{"status":1}`, schemaMiss},
	{"list_tickets", `{"include_deleted":true}`, schemaMiss},
	{"list_tickets", `{"Status":"open"}`, schemaMiss},

	{"get_ticket", `{"id":"4711"}`, ok},
	{"get_ticket", `{"id":"1"}`, toolError},
	{"get_ticket", `{"id":"123456789012"}`, toolError},
	{"get_ticket", `{"id":"1234567890123"}`, schemaMiss},
	{"get_ticket", `{"id":""}`, schemaMiss},
	{"get_ticket", `{"id":"47a1"}`, schemaMiss},
	{"get_ticket", `{"id":"-1"}`, schemaMiss},
	{"get_ticket", `{"id":"4711\n"}`, schemaMiss},
	{"get_ticket", `{"id":"\u0664\u0667\u0661\u0661"}`, schemaMiss}, // Arabic-Indic digits
	{"get_ticket", `{"id":4711}`, schemaMiss},
	{"get_ticket", `{}`, schemaMiss},
	{"get_ticket", `{"id":"4711","fields":"all"}`, schemaMiss},

	{"add_comment", `{"ticket_id":"4711","body":"x"}`, ok},
	{"add_comment", `{"ticket_id":"4711","body":"` + strings.Repeat("a", 4000) + `"}`, ok},
	{"add_comment", `{"ticket_id":"4711","body":"` + strings.Repeat("é", 4000) + `"}`, ok}, // characters, not bytes
	{"add_comment", `{"ticket_id":"4711","body":"` + strings.Repeat("a", 4001) + `"}`, schemaMiss},
	{"add_comment", `{"ticket_id":"4711","body":"` + strings.Repeat("é", 4001) + `"}`, schemaMiss},
	{"add_comment", `{"ticket_id":"4711","body":""}`, schemaMiss},
	{"add_comment", `{"ticket_id":"4711","body":"   "}`, toolError},
	{"add_comment", `{"ticket_id":"4711","body":7}`, schemaMiss},
	{"add_comment", `{"ticket_id":"4711"}`, schemaMiss},
	{"add_comment", `{"body":"x"}`, schemaMiss},
	{"add_comment", `{"ticket_id":"9999","body":"x"}`, toolError},
	{"add_comment", `{"ticket_id":"1234567890123","body":"x"}`, schemaMiss},
	{"add_comment", `{"ticket_id":"4711","body":"x","visibility":"public"}`, schemaMiss},

	{"reset_password", `{"username":"jdoe","reason":"Locked out after travel"}`, ok},
	{"reset_password", `{"username":"clee","reason":"0123456789"}`, ok},
	{"reset_password", `{"username":"clee","reason":"` + strings.Repeat("r", 500) + `"}`, ok},
	{"reset_password", `{"username":"clee","reason":"` + strings.Repeat("ü", 500) + `"}`, ok},
	{"reset_password", `{"username":"clee","reason":"012345678"}`, schemaMiss},
	{"reset_password", `{"username":"clee","reason":"` + strings.Repeat("r", 501) + `"}`, schemaMiss},
	{"reset_password", `{"username":"clee","reason":"          "}`, toolError},
	{"reset_password", `{"username":"a","reason":"reason enough"}`, toolError},
	{"reset_password", `{"username":"a` + strings.Repeat("b", 63) + `","reason":"reason enough"}`, toolError},
	{"reset_password", `{"username":"a` + strings.Repeat("b", 64) + `","reason":"reason enough"}`, schemaMiss},
	{"reset_password", `{"username":"j.doe_2-x","reason":"reason enough"}`, toolError},
	{"reset_password", `{"username":"JDoe","reason":"reason enough"}`, schemaMiss},
	{"reset_password", `{"username":"1doe","reason":"reason enough"}`, schemaMiss},
	{"reset_password", `{"username":"j doe","reason":"reason enough"}`, schemaMiss},
	{"reset_password", `{"username":"jdoe\n","reason":"reason enough"}`, schemaMiss},
	{"reset_password", `{"username":"../admin","reason":"reason enough"}`, schemaMiss},
	{"reset_password", `{"username":"","reason":"reason enough"}`, schemaMiss},
	{"reset_password", `{"username":"jdoe"}`, schemaMiss},
	{"reset_password", `{"reason":"reason enough"}`, schemaMiss},
	{"reset_password", `{"username":"jdoe","reason":"reason enough","notify_user":false}`, schemaMiss},
}

// The server refuses every argument its schemas refuse, on its own, with nothing in front of it.
func TestArgumentLimits(t *testing.T) {
	s := start(t)
	for _, c := range argumentCases {
		r := s.callTool(t, c.tool, c.args)
		switch c.want {
		case ok:
			if r.IsError || r.StructuredContent == nil {
				t.Errorf("%s %.80s: refused: %s", c.tool, c.args, r.text())
			}
		case schemaMiss:
			if !r.IsError || !strings.HasPrefix(r.text(), `validating "arguments": `) {
				t.Errorf("%s %.80s: %+v, want a refusal by the input schema", c.tool, c.args, r)
			}
		case toolError:
			if !r.IsError || strings.HasPrefix(r.text(), "validating") {
				t.Errorf("%s %.80s: %+v, want the tool's own refusal", c.tool, c.args, r)
			}
		}
	}
	// Nothing a refused call carried reached the data.
	for _, r := range s.api.Resets() {
		if r.Username != "jdoe" && r.Username != "clee" {
			t.Errorf("a refused reset happened: %+v", r)
		}
	}
	if tk, _ := s.api.Ticket("4711"); len(tk.Comments) != 3 {
		t.Errorf("ticket 4711 has %d comments, want the 3 accepted", len(tk.Comments))
	}
}

// snapshotSchemas compiles the input schemas of the snapshot as the policy compiles a JSON
// Schema.
func snapshotSchemas(t testing.TB) map[string]*jsonschema.Schema {
	t.Helper()
	data, err := os.ReadFile(snapshot)
	if err != nil {
		t.Fatal(err)
	}
	var snap struct {
		Tools []struct {
			Name        string          `json:"name"`
			InputSchema json.RawMessage `json:"inputSchema"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	schemas := map[string]*jsonschema.Schema{}
	for _, tool := range snap.Tools {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(tool.InputSchema))
		if err != nil {
			t.Fatal(err)
		}
		comp := jsonschema.NewCompiler()
		comp.DefaultDraft(jsonschema.Draft2020)
		comp.AssertFormat()
		url := "mem:///" + tool.Name + ".json"
		if err := comp.AddResource(url, doc); err != nil {
			t.Fatal(err)
		}
		if schemas[tool.Name], err = comp.Compile(url); err != nil {
			t.Fatalf("%s: %v", tool.Name, err)
		}
	}
	return schemas
}

// The input schemas of the snapshot, compiled as the policy compiles a JSON Schema, accept and
// refuse exactly what the server does: a front proxy that imports them agrees with the server.
func TestSnapshotSchemasAgreeWithTheServer(t *testing.T) {
	schemas := snapshotSchemas(t)
	for _, c := range argumentCases {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(c.args))
		if err != nil {
			t.Fatal(err)
		}
		err = schemas[c.tool].Validate(v)
		if accepted := err == nil; accepted != (c.want != schemaMiss) {
			t.Errorf("%s %.80s: the policy's validator says %v, the server %v", c.tool, c.args, err, c.want)
		}
	}
}

// sameJSON reports whether text is JSON with the same value as structured: the SDK writes the
// structured content's members in its own order.
func sameJSON(text string, structured json.RawMessage) bool {
	var a, b any
	if json.Unmarshal([]byte(text), &a) != nil || json.Unmarshal(structured, &b) != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}
