package e2e_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
	"github.com/agentauthz/agentauthz/internal/stack"
	"github.com/agentauthz/agentauthz/policy"
)

// The response guard through real Envoy and agentauthz with the demo policy: the helpdesk API
// sends every ticket with the requester's e-mail and phone, and the helpdesk agent's view of a
// ticket (REST and MCP) has neither. Only responses with a response rule reach agentauthz's
// ext_proc filter, as Envoy's own counters show.

const (
	helpdeskURL  = "https://helpdesk.acme.internal"
	jdoeEmail    = "jdoe@acme.example"
	jdoePhone    = "+1-202-555-0141"
	contactEmail = "requester_email"
	contactPhone = "requester_phone"
)

// faults makes the real helpdesk upstream answer a path with a body the test chooses, as a
// broken or oversized API would; other requests reach the API.
type faults struct {
	mu     sync.Mutex
	bodies map[string]fault // by request URI
}

type fault struct{ body, encoding string }

func (f *faults) set(uri, body string) { f.setEncoded(uri, body, "") }

// setEncoded answers uri with body and Content-Encoding: encoding.
func (f *faults) setEncoded(uri, body, encoding string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bodies == nil {
		f.bodies = map[string]fault{}
	}
	f.bodies[uri] = fault{body, encoding}
}

func (f *faults) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		ft, ok := f.bodies[r.RequestURI]
		f.mu.Unlock()
		if !ok {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if ft.encoding != "" {
			w.Header().Set("Content-Encoding", ft.encoding)
		}
		_, _ = w.Write([]byte(ft.body))
	})
}

// received is the last request for uri that reached the helpdesk API, with its answer.
func received(t *testing.T, s *stack.Stack, uri string) stack.Received {
	t.Helper()
	rs := s.Helpdesk.Received()
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].URI == uri {
			return rs[i]
		}
	}
	t.Fatalf("nothing reached the helpdesk API for %s", uri)
	return stack.Received{}
}

// sent is the body the helpdesk API answered the last request for uri with.
func sent(t *testing.T, s *stack.Stack, uri string) string {
	t.Helper()
	return string(received(t, s, uri).Response)
}

// responseEvent is the decision log's record of what the response guard did with the answer
// to the last request for uri: the "response" record of the decision id agentauthz sent the
// API with that request.
func responseEvent(t *testing.T, s *stack.Stack, uri string) stack.Event {
	t.Helper()
	id := received(t, s, uri).Header.Get(extauthz.DecisionIDHeader)
	for _, ev := range s.Authz.Decisions.Events("response") {
		if ev.Attrs["decision_id"].String() == id && id != "" {
			return ev
		}
	}
	t.Fatalf("no response record for decision %q", id)
	return stack.Event{}
}

// guardStreams is how many responses Envoy has sent agentauthz's response guard so far.
func guardStreams(t *testing.T, s *stack.Stack) uint64 {
	t.Helper()
	return s.ResponseGuardStats(t)["streams_started"]
}

func TestResponseGuardREST(t *testing.T) {
	f := &faults{}
	s := stack.Start(t, stack.Options{Helpdesk: f.wrap})
	c := s.Client(stack.HelpdeskAgent)

	t.Run("a ticket without the requester's e-mail and phone, which the API sent", func(t *testing.T) {
		before := guardStreams(t, s)
		a := send(t, c, "GET", helpdeskURL+"/v1/tickets/4711", "")
		var tk map[string]any
		if a.status != http.StatusOK || json.Unmarshal([]byte(a.body), &tk) != nil {
			t.Fatalf("%d %s", a.status, a.body)
		}
		if tk["id"] != "4711" || tk["requester"] != "jdoe" || tk["subject"] == nil || tk["comments"] == nil {
			t.Errorf("the ticket lost what the agent may read: %s", a.body)
		}
		for _, k := range []string{contactEmail, contactPhone} {
			if _, ok := tk[k]; ok {
				t.Errorf("the agent read %s: %s", k, a.body)
			}
		}
		if strings.Contains(a.body, jdoeEmail) || strings.Contains(a.body, jdoePhone) {
			t.Errorf("the agent read jdoe's contact details: %s", a.body)
		}
		if up := sent(t, s, "/v1/tickets/4711"); !strings.Contains(up, jdoeEmail) || !strings.Contains(up, jdoePhone) {
			t.Errorf("the API did not send the contact details: %s", up)
		}
		if n := a.header.Get("content-length"); n != "" && n != itoa(len(a.body)) {
			t.Errorf("content-length %s for a body of %d bytes", n, len(a.body))
		}
		if got := guardStreams(t, s) - before; got != 1 {
			t.Errorf("%d ext_proc streams for one guarded response, want 1", got)
		}
		// The decision log says what was removed: paths, never values.
		ev := responseEvent(t, s, "/v1/tickets/4711")
		if got := fmt.Sprint(ev.Attrs["removed"]); got != "[/requester_email /requester_phone]" || ev.Attrs["shadow"].Bool() || ev.Attrs["outcome"].String() != "reduced" {
			t.Errorf("the response record: %v", ev.Attrs)
		}
		if strings.Contains(fmt.Sprint(ev.Attrs), jdoeEmail) {
			t.Errorf("the response record holds a value: %v", ev.Attrs)
		}
	})

	t.Run("the list: no ticket carries them", func(t *testing.T) {
		a := send(t, c, "GET", helpdeskURL+"/v1/tickets?status=open", "")
		var list struct {
			Tickets []map[string]any `json:"tickets"`
		}
		if a.status != http.StatusOK || json.Unmarshal([]byte(a.body), &list) != nil || len(list.Tickets) != 3 {
			t.Fatalf("%d %s", a.status, a.body)
		}
		if strings.Contains(a.body, contactEmail) || strings.Contains(a.body, contactPhone) || strings.Contains(a.body, "@acme.example") {
			t.Errorf("the agent read contact details: %s", a.body)
		}
		if up := sent(t, s, "/v1/tickets?status=open"); strings.Count(up, "@acme.example") != 3 {
			t.Errorf("the API sent %s", up)
		}
	})

	t.Run("a route without a response rule is not sent to ext_proc", func(t *testing.T) {
		before := s.ResponseGuardStats(t)
		a := send(t, c, "POST", helpdeskURL+"/v1/tickets/4711/comments", `{"body":"Restarted the VPN gateway."}`)
		if a.status != http.StatusCreated {
			t.Fatalf("%d %s", a.status, a.body)
		}
		// A denial has no response rule either.
		if a := send(t, c, "DELETE", helpdeskURL+"/v1/tickets/4711", ""); a.status != http.StatusForbidden {
			t.Fatalf("delete: %d %s", a.status, a.body)
		}
		after := s.ResponseGuardStats(t)
		for _, k := range []string{"streams_started", "stream_msgs_sent"} {
			if after[k] != before[k] {
				t.Errorf("%s went from %d to %d", k, before[k], after[k])
			}
		}
	})

	t.Run("shadow: the answer passes unchanged, and the record says what would have been removed", func(t *testing.T) {
		s.Authz.Reload(demoWith(t, getTicketRule, getTicketRule+"            shadow: true\n"))
		defer s.Authz.ReloadDemo()
		before := guardStreams(t, s)
		a := send(t, c, "GET", helpdeskURL+"/v1/tickets/4714", "")
		if a.status != http.StatusOK || a.body != sent(t, s, "/v1/tickets/4714") || !strings.Contains(a.body, "bwayne@acme.example") {
			t.Fatalf("%d %s", a.status, a.body)
		}
		if got := guardStreams(t, s) - before; got != 1 {
			t.Errorf("%d ext_proc streams, want 1: a rule in shadow is still applied, to report", got)
		}
		ev := responseEvent(t, s, "/v1/tickets/4714")
		if got := fmt.Sprint(ev.Attrs["removed"]); got != "[/requester_email /requester_phone]" || !ev.Attrs["shadow"].Bool() {
			t.Errorf("the response record: %v", ev.Attrs)
		}
	})

	t.Run("a body that is not JSON does not reach the agent", func(t *testing.T) {
		broken := `{"id":"4712","requester_email":"` + jdoeEmail + `","subject":`
		f.set("/v1/tickets/4712", broken)
		a := send(t, c, "GET", helpdeskURL+"/v1/tickets/4712", "")
		if a.status != http.StatusBadGateway || a.str("code") != "response_refused" || strings.Contains(a.body, jdoeEmail) {
			t.Errorf("%d %s", a.status, a.body)
		}
		if up := sent(t, s, "/v1/tickets/4712"); up != broken {
			t.Errorf("the upstream sent %q", up)
		}
	})

	t.Run("an encoded body does not reach the agent", func(t *testing.T) {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		_, _ = zw.Write([]byte(sent(t, s, "/v1/tickets/4711")))
		_ = zw.Close()
		f.setEncoded("/v1/tickets/4715", gz.String(), "gzip")
		a := send(t, c, "GET", helpdeskURL+"/v1/tickets/4715", "", "Accept-Encoding: gzip")
		if a.status != http.StatusBadGateway || a.str("code") != "response_refused" || a.header.Get("content-encoding") != "" {
			t.Errorf("%d %v %q", a.status, a.header, a.body)
		}
	})

	t.Run("a body over the rule's max_bytes does not reach the agent", func(t *testing.T) {
		// getTicket's rule reads at most 64 KiB: a valid ticket of 70 000 bytes.
		big, _ := json.Marshal(map[string]any{"id": "4713", "subject": strings.Repeat("s", 70000), "status": "open",
			"requester": "asmith", contactEmail: "asmith@acme.example", contactPhone: "+1-202-555-0172",
			"created_at": "2026-09-01T11:00:00Z", "comments": []any{}})
		f.set("/v1/tickets/4713", string(big))
		a := send(t, c, "GET", helpdeskURL+"/v1/tickets/4713", "")
		if a.status != http.StatusBadGateway || a.str("code") != "response_refused" || strings.Contains(a.body, "asmith@acme.example") || strings.Contains(a.body, "sssssssss") {
			t.Errorf("%d %.300s", a.status, a.body)
		}
		if up := sent(t, s, "/v1/tickets/4713"); len(up) != len(big) {
			t.Errorf("the upstream sent %d bytes, want %d", len(up), len(big))
		}
	})
}

// TestResponseGuardMCP: get_ticket's result through front-proxy.yaml and through mcp.yaml
// (whose ext_proc filter also filters MCP lists): without the requester's e-mail and phone, in
// structured content and text; add_comment's result, which has no response rule, never sent to
// ext_proc.
func TestResponseGuardMCP(t *testing.T) {
	for _, config := range []string{"front-proxy.yaml", "mcp.yaml"} {
		t.Run(config, func(t *testing.T) { responseGuardMCP(t, config == "mcp.yaml") })
	}
}

func responseGuardMCP(t *testing.T, mcpConfig bool) {
	s := stack.Start(t, stack.Options{MCPConfig: mcpConfig})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	httpClient := s.Client(stack.HelpdeskAgent)
	httpClient.Transport = hostTransport{base: httpClient.Transport}
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.URL() + demoagent.MCPPath, HTTPClient: httpClient}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	before := guardStreams(t, s)
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_ticket", Arguments: map[string]any{"id": "4711"}})
	if err != nil || res.IsError {
		t.Fatalf("get_ticket: %v %+v", err, res)
	}
	structured, _ := json.Marshal(res.StructuredContent)
	var text string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			text += tc.Text
		}
	}
	for what, got := range map[string]string{"structured content": string(structured), "text": text} {
		if !strings.Contains(got, `"subject":"VPN drops every few minutes"`) {
			t.Errorf("%s lost what the agent may read: %s", what, got)
		}
		if strings.Contains(got, contactEmail) || strings.Contains(got, contactPhone) || strings.Contains(got, jdoeEmail) {
			t.Errorf("%s carries the requester's contact details: %s", what, got)
		}
	}
	// The MCP server sent them, in both.
	var up string
	for _, r := range s.Helpdesk.Received() {
		if strings.Contains(string(r.Body), `"get_ticket"`) {
			up = string(r.Response)
		}
	}
	if strings.Count(up, jdoeEmail) != 2 {
		t.Errorf("the MCP server's answer: %s", up)
	}
	if got := guardStreams(t, s) - before; got != 1 {
		t.Errorf("%d ext_proc streams for one guarded tool result, want 1", got)
	}

	// add_comment has no response rule: its result is not sent to ext_proc.
	before = guardStreams(t, s)
	if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "add_comment", Arguments: map[string]any{"ticket_id": "4711", "body": "Checked."}}); err != nil || res.IsError {
		t.Fatalf("add_comment: %v %+v", err, res)
	}
	if got := guardStreams(t, s) - before; got != 0 {
		t.Errorf("%d ext_proc streams for a tool without a response rule", got)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// getTicketRule is the demo policy's response rule of getTicket, as acme.yaml writes it.
const getTicketRule = `          response:
            max_bytes: 65536
            allow: [/id, /subject, /status, /requester, /created_at, /comments]
`

// demoWith is the demo policy with acme.yaml's old replaced by new (which must be there once).
func demoWith(t testing.TB, old, new string) []policy.File {
	t.Helper()
	files := stack.DemoFiles(t)
	for i, f := range files {
		if !strings.HasSuffix(f.Name, "acme.yaml") {
			continue
		}
		if n := strings.Count(string(f.Data), old); n != 1 {
			t.Fatalf("acme.yaml has %q %d times, want once", old, n)
		}
		files[i].Data = []byte(strings.Replace(string(f.Data), old, new, 1))
		return files
	}
	t.Fatal("the demo policy has no acme.yaml")
	return nil
}

// BenchmarkResponseGuard is the Envoy-level cost of a response rule: the helpdesk agent reads
// ticket 4711 (about 300 bytes of JSON) through real Envoy, with the demo policy (getTicket's
// response rule: ext_proc buffers the body and agentauthz filters it) and with the same policy
// without that rule (the filter is skipped). One request at a time, so ns/op is the latency
// an agent sees; guard-streams/op shows which path each took.
func BenchmarkResponseGuard(b *testing.B) {
	s := stack.Start(b, stack.Options{})
	c := s.Client(stack.HelpdeskAgent)
	for _, bc := range []struct {
		name    string
		files   []policy.File
		streams uint64
	}{
		{"no-rule", demoWith(b, getTicketRule, ""), 0},
		{"rule", stack.DemoFiles(b), 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s.Authz.Reload(bc.files)
			before := s.ResponseGuardStats(b)["streams_started"]
			n := uint64(0)
			for b.Loop() {
				a := send(b, c, "GET", helpdeskURL+"/v1/tickets/4711", "")
				if a.status != http.StatusOK || strings.Contains(a.body, jdoeEmail) == (bc.streams == 1) {
					b.Fatalf("%d %s", a.status, a.body)
				}
				n++
			}
			streams := s.ResponseGuardStats(b)["streams_started"] - before
			b.ReportMetric(float64(streams)/float64(n), "guard-streams/op")
			if streams != n*bc.streams {
				b.Errorf("%d ext_proc streams for %d requests", streams, n)
			}
		})
	}
}

// TestMalformedRequestsGetAStatus: a request Envoy refuses itself before any check (malformed
// HTTP/1.1) gets Envoy's 400, through front-proxy.yaml and through mcp.yaml, whose ext_proc
// filters would otherwise hold the reply while the codec error closes the connection: the
// filter is skipped for an answer ext_authz never gave.
func TestMalformedRequestsGetAStatus(t *testing.T) {
	for _, config := range []string{"front-proxy.yaml", "mcp.yaml"} {
		t.Run(config, func(t *testing.T) {
			s := stack.Start(t, stack.Options{MCPConfig: config == "mcp.yaml"})
			svid := s.SVID(stack.HelpdeskAgent)
			for _, req := range []string{
				"POST /m cp HTTP/1.1\r\nHost: " + demoagent.MCPHost + "\r\nContent-Length: 0\r\n\r\n",
				"GET /v1/tïckets HTTP/1.1\r\nHost: helpdesk.acme.internal\r\n\r\n",
				"GET /mcp HTTP/1.1\r\nHost: " + demoagent.MCPHost + "\r\nX_Session: 1\r\n\r\n",
			} {
				before := guardStreams(t, s)
				conn, err := tls.Dial("tcp", s.Addr, s.PKI.ClientTLS(&svid, stack.EnvoyID, "http/1.1"))
				if err != nil {
					t.Fatal(err)
				}
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.WriteString(conn, req)
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				conn.Close()
				if err != nil || resp.StatusCode != http.StatusBadRequest {
					t.Errorf("%q: %v %v, want Envoy's 400", req, resp, err)
				}
				if got := guardStreams(t, s) - before; got != 0 {
					t.Errorf("%q: %d ext_proc streams", req, got)
				}
			}
		})
	}
}
