package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyFile copies a file into dir and returns its new path.
func copyFile(t *testing.T, from, dir string) string {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(dir, filepath.Base(from))
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return to
}

// TestOpenAPIInitLintsClean: the starting policy of every document in the tests lints clean and
// grants nothing; operations that cannot be routes are listed with the reason.
func TestOpenAPIInitLintsClean(t *testing.T) {
	for _, spec := range []string{
		demoDir + "/helpdesk.openapi.json",
		"../../policy/testdata/openapi/store.openapi.yaml",
		"../../policy/openapi/testdata/tickets-3.0.yaml",
		"../../policy/openapi/testdata/tickets-3.1.json",
	} {
		t.Run(filepath.Base(spec), func(t *testing.T) {
			dir := t.TempDir()
			doc := copyFile(t, spec, dir)
			out := filepath.Join(dir, "policy.yaml")
			r := cli(t, "openapi", "init", "--out", out, doc)
			r.want(t, exitOK)
			r = cli(t, "lint", out)
			r.want(t, exitOK)
			if !strings.Contains(r.stdout, ": ok: 0 agents, 1 hosts, ") {
				t.Errorf("lint: %s", r.stdout)
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(data), "\nagents:") {
				t.Errorf("the starting policy defines agents:\n%s", data)
			}
			// Every operation the document has is there, granted or explained.
			for _, want := range map[string][]string{
				"helpdesk.openapi.json": {`id: "listTickets"`, `id: "resetPassword"`, "approval_extension:", "scope: tickets:read", "scope: users:write", "scope: tickets:delete"},
				"store.openapi.yaml":    {`id: "listThings"`, `id: "search_things"`, "# POST /upload cannot be a route: ", "multipart/form-data"},
				"tickets-3.0.yaml":      {`id: "createTicket"`, `name: "tickets.example"`},
			}[filepath.Base(spec)] {
				if !strings.Contains(string(data), want) {
					t.Errorf("the starting policy lacks %q:\n%s", want, data)
				}
			}
		})
	}
}

func TestOpenAPIInitRefuses(t *testing.T) {
	dir := t.TempDir()
	doc := copyFile(t, demoDir+"/helpdesk.openapi.json", dir)
	other := t.TempDir()
	r := cli(t, "openapi", "init", "--out", filepath.Join(other, "policy.yaml"), doc)
	r.want(t, exitError)
	if !strings.Contains(r.stderr, "is not inside") {
		t.Errorf("stderr = %q", r.stderr)
	}
	existing := filepath.Join(dir, "taken.yaml")
	if err := os.WriteFile(existing, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = cli(t, "openapi", "init", "--out", existing, doc)
	r.want(t, exitError)
	r = cli(t, "openapi", "init")
	r.want(t, exitUsage)
	r = cli(t, "openapi", "frobnicate")
	r.want(t, exitUsage)
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("openapi: 3.1.0\nopenapi: 3.1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = cli(t, "openapi", "init", bad)
	r.want(t, exitError)
	if !strings.Contains(r.stderr, `bad.yaml:2:1: duplicate key "openapi"`) {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestOpenAPIRoutes(t *testing.T) {
	r := cli(t, "openapi", "routes", demoDir+"/helpdesk.openapi.json")
	r.want(t, exitOK)
	for _, want := range []string{
		"GET helpdesk.acme.internal/v1/tickets\n  route list-tickets, operation listTickets, suggested scope tickets:read\n",
		"  query.limit: integer, must be at least 1, must be at most 100\n",
		"  path.id: string, must match ^[0-9]{1,12}$",
		"POST helpdesk.acme.internal/v1/users/{username}/password-reset\n",
		"  body: application/json, the document's schema, at most 65536 bytes\n  held for approval (x-agentauthz-approval)\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	r = cli(t, "openapi", "routes", "../../policy/testdata/openapi/store.openapi.yaml")
	r.want(t, exitOK)
	for _, want := range []string{
		"  header.X-Request-Id: not checked (routes do not type headers)\n",
		"  query.color: string, repeatable, must be one of red, blue",
		"not a route: POST /upload cannot be a route: ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestLintOpenAPIBaseline: lint --openapi-baseline reports what changed under the policy's
// grants since an older copy of its document.
func TestLintOpenAPIBaseline(t *testing.T) {
	setCredential(t)
	dir := t.TempDir()
	for _, name := range []string{"acme.yaml", "helpdesk.openapi.json", "helpdesk.proto", "bi.graphql", "helpdesk-mcp.tools.json"} {
		copyFile(t, demoDir+"/"+name, dir)
	}
	oldDir := t.TempDir()
	old := copyFile(t, demoDir+"/helpdesk.openapi.json", oldDir)

	r := cli(t, "lint", "--openapi-baseline", "helpdesk.openapi.json="+old, dir)
	r.want(t, exitOK)

	doc := filepath.Join(dir, "helpdesk.openapi.json")
	data, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	widened := strings.Replace(string(data), `"minimum": 1, "maximum": 100`, `"minimum": 1, "maximum": 1000`, 1)
	if widened == string(data) {
		t.Fatal("the document's limit was not found")
	}
	if err := os.WriteFile(doc, []byte(widened), 0o644); err != nil {
		t.Fatal(err)
	}
	r = cli(t, "lint", "--openapi-baseline", "helpdesk.openapi.json="+old, dir)
	r.want(t, exitProblems)
	if !strings.Contains(r.stdout, "helpdesk.openapi.json:15:7: operation listTickets changed since "+old+
		" under the grant of scope tickets:read (") || !strings.Contains(r.stdout, "): query parameter limit\n") {
		t.Errorf("stdout = %q", r.stdout)
	}
	r = cli(t, "lint", "--openapi-baseline", "nope.json="+old, dir)
	r.want(t, exitError)
	r = cli(t, "lint", "--openapi-baseline", "no-equals-sign", dir)
	r.want(t, exitUsage)
}
