package authzen

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy/target"
)

// FuzzReadRequest: the request reader never panics, accepts only strict JSON, and reads an
// accepted HTTP evaluation into facts that say exactly what it said: resource.id is
// https://HOST + the target, byte for byte; the principal, method and body are the ones sent;
// every header is a lower-case token without CR, LF or NUL in its value.
func FuzzReadRequest(f *testing.F) {
	paths, _ := filepath.Glob("testdata/spec/*.json")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		var c struct {
			Endpoint string          `json:"endpoint"`
			Request  json.RawMessage `json:"request"`
		}
		if json.Unmarshal(data, &c) == nil && c.Request != nil {
			f.Add([]byte(c.Request), c.Endpoint == EvaluationsPath)
		}
	}
	for _, s := range []string{
		`{"subject":{"type":"agent","id":"spiffe://acme.internal/agent/helpdesk"},"action":{"name":"POST"},"resource":{"type":"http","id":"https://helpdesk.acme.internal/v1/tickets/1/comments?x=1"},"context":{"headers":{"content-type":"application/json","host":"helpdesk.acme.internal"},"body":"{\"body\":\"hi\"}","body_truncated":false}}`,
		`{"subject":{"type":"agent","id":"a"},"action":{"name":"GET"},"resource":{"type":"http","id":"https://h/p"},"context":{"body_base64":"AAE="}}`,
		`{"subject":{"type":"agent","id":"a"},"action":{"name":"GET"},"evaluations":[{"resource":{"type":"http","id":"https://h@x/p#f"}},{},7]}`,
		`{"subject":{"type":"agent","id":"a"},"action":{"name":"GET"},"resource":{"type":"http","id":"https://h/p"},"context":{"headers":{"A":"b",":path":"/","x":"a\r\nb"}}}`,
		`{"subject":{"type":"access_token","id":"authorization"},"action":{"name":"GET"},"resource":{"type":"http","id":"https://h/p"},"context":{"headers":{"authorization":"Bearer x"}}}`,
		`{"subject":{"type":"access_token","id":"authorization"},"action":{"name":"tools/call"},"resource":{"type":"mcp_tool","id":"list_tickets","properties":{"server":"mcp.acme.internal/mcp","arguments":{"limit":5}}},"context":{"headers":{"authorization":"Bearer x","content-type":"text/plain","host":"mcp.acme.internal"}}}`,
		`{"subject":{"type":"agent","id":"a"},"action":{"name":"tools/call"},"resource":{"type":"mcp_tool","id":"t","properties":{"server":"h/p"}},"context":{"headers":{"Authorization":"x"}}}`,
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, batch bool) {
		orig := bytes.Clone(data)
		req, err := readRequest(data, batch)
		if !bytes.Equal(data, orig) {
			t.Fatal("readRequest wrote to its input")
		}
		if err != nil {
			if _, ok := err.(*badRequest); !ok {
				t.Fatalf("an error that is not a bad request: %T %v", err, err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted JSON that encoding/json refuses: %q", data)
		}
		if !batch && req.batch {
			t.Fatal("a single evaluation read as a batch")
		}
		if len(req.items) > MaxEvaluations {
			t.Fatalf("%d evaluations accepted", len(req.items))
		}
		evs := []evaluation{req.single}
		if req.batch {
			evs = evs[:0]
			for _, it := range req.items {
				if it.err == nil {
					evs = append(evs, it.ev)
				} else if it.err.status != 400 || it.err.message == "" {
					t.Fatalf("an item error without status or message: %+v", it.err)
				}
			}
		}
		for i := range evs {
			checkFacts(t, &evs[i])
			checkToolFacts(t, &evs[i])
		}
	})
}

func checkFacts(t *testing.T, ev *evaluation) {
	r := readHTTP(ev)
	if r.Unreadable != nil {
		if r.Unreadable.Code != "request_malformed" || r.Unreadable.Detail == "" {
			t.Fatalf("a refusal that is not request_malformed with a detail: %+v", r.Unreadable)
		}
		return
	}
	if principal := map[string]string{SubjectAgent: ev.subject.id, SubjectAccessToken: ""}[ev.subject.typ]; r.Principal != principal ||
		(ev.subject.typ != SubjectAgent && ev.subject.typ != SubjectAccessToken) || r.Method != ev.action || r.Method == "" {
		t.Fatalf("facts %q %q from subject %+v, action %q", r.Principal, r.Method, ev.subject, ev.action)
	}
	if got := "https://" + r.Host + r.Target; got != ev.resource.id || r.Host == "" || !strings.HasPrefix(r.Target, "/") ||
		strings.ContainsAny(r.Host, "@/?#") || strings.Contains(r.Target, "#") {
		t.Fatalf("resource %q read as host %q, target %q", ev.resource.id, r.Host, r.Target)
	}
	if h, ok := r.Headers.(headers); ok {
		for name, v := range h {
			if !isToken(name) || !validValue(v) || name == partialBodyHeader {
				t.Fatalf("header %q: %q accepted", name, v)
			}
			if name == "host" && !target.EqualFoldASCII(v, r.Host) {
				t.Fatalf("host header %q accepted for host %q", v, r.Host)
			}
		}
	} else if r.Headers != nil {
		t.Fatalf("headers of type %T", r.Headers)
	}
	switch {
	case ev.context["body"] != nil:
		if s := ev.context["body"].(string); string(r.Body) != s || (s == "") != (r.Body == nil) {
			t.Fatalf("body %q read as %q", s, r.Body)
		}
	case ev.context["body_base64"] != nil:
		want, _ := base64.StdEncoding.DecodeString(ev.context["body_base64"].(string))
		if !bytes.Equal(r.Body, want) {
			t.Fatalf("body_base64 read as %q, want %q", r.Body, want)
		}
	case r.Body != nil:
		t.Fatalf("a body %q from nowhere", r.Body)
	}
}

// checkToolFacts: an evaluation read as an MCP tool call is refused as request_malformed, or
// is the POST of one tools/call of the tool resource.id names, from the subject's SPIFFE ID (none
// for an access_token subject), with the call's own headers and, of the context's, only
// authorization, as sent.
func checkToolFacts(t *testing.T, ev *evaluation) {
	r := readMCPTool(ev)
	if r.Unreadable != nil {
		if r.Unreadable.Code != "request_malformed" || r.Unreadable.Detail == "" {
			t.Fatalf("a refusal that is not request_malformed with a detail: %+v", r.Unreadable)
		}
		return
	}
	if principal := map[string]string{SubjectAgent: ev.subject.id, SubjectAccessToken: ""}[ev.subject.typ]; r.Principal != principal ||
		(ev.subject.typ != SubjectAgent && ev.subject.typ != SubjectAccessToken) || r.Method != "POST" || ev.action != "tools/call" {
		t.Fatalf("facts %q %q from subject %+v, action %q", r.Principal, r.Method, ev.subject, ev.action)
	}
	var msg struct {
		Method string
		Params struct{ Name string }
	}
	if err := json.Unmarshal(r.Body, &msg); err != nil || msg.Method != "tools/call" || msg.Params.Name != ev.resource.id {
		t.Fatalf("body %q (%v) for tool %q", r.Body, err, ev.resource.id)
	}
	h, _ := r.Headers.(headers)
	sent, _ := ev.context[ContextHeaders].(map[string]any)
	for name, v := range h {
		switch name {
		case "content-type", "mcp-protocol-version", "content-length":
		case "authorization":
			if sent[name] != v {
				t.Fatalf("authorization %q, sent %v", v, sent[name])
			}
		default:
			t.Fatalf("header %q: %q taken from the context", name, v)
		}
	}
	if _, ok := sent["authorization"]; ok && h["authorization"] == "" && sent["authorization"] != "" {
		t.Fatal("the context's authorization was dropped")
	}
}
