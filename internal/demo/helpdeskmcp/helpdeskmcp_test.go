package helpdeskmcp_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
	"github.com/agentauthz/agentauthz/internal/demo/helpdeskmcp"
)

const token = "SENTINEL-helpdesk-token"

// server is the helpdesk process as cmd/helpdesk-api serves it: REST and MCP over one API.
type server struct {
	api  *helpdesk.API
	url  string
	logs *bytes.Buffer
}

func start(t testing.TB) *server {
	t.Helper()
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	api, err := helpdesk.New(helpdesk.Config{Token: token, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(helpdeskmcp.Routes(api, log))
	t.Cleanup(srv.Close)
	return &server{api: api, url: srv.URL, logs: &logs}
}

// rpcAnswer is one HTTP answer to a JSON-RPC POST.
type rpcAnswer struct {
	status int
	header http.Header
	raw    []byte
	msg    struct {
		ID     json.RawMessage `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int             `json:"code"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		} `json:"error"`
	}
}

// toolResult is a tools/call result.
type toolResult struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	StructuredContent json.RawMessage `json:"structuredContent"`
	IsError           bool            `json:"isError"`
}

// post sends one JSON-RPC message as an agent behind the front proxy does: the MCP host,
// the protocol version header (none when version is ""), and auth as the Authorization header.
func (s *server) post(t testing.TB, auth, version, body string, header ...string) rpcAnswer {
	t.Helper()
	req, err := http.NewRequest("POST", s.url+helpdeskmcp.Path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = helpdeskmcp.Host
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if version != "" {
		req.Header.Set("Mcp-Protocol-Version", version)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := rpcAnswer{status: resp.StatusCode, header: resp.Header}
	if a.raw, err = io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(a.raw, &a.msg); err != nil {
			t.Fatalf("%s: the answer %q is not JSON: %v", body, a.raw, err)
		}
	}
	return a
}

// callTool sends tools/call with the injected credential and the 2025-11-25 protocol, and
// returns its result; a JSON-RPC error fails the test.
func (s *server) callTool(t testing.TB, name, arguments string) toolResult {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + name + `","arguments":` + arguments + `}}`
	a := s.post(t, "Bearer "+token, "2025-11-25", body)
	if a.status != http.StatusOK || a.msg.Error != nil || a.msg.Result == nil {
		t.Fatalf("%s %s: %d %s", name, arguments, a.status, a.raw)
	}
	var r toolResult
	if err := json.Unmarshal(a.msg.Result, &r); err != nil {
		t.Fatalf("%s: result %s: %v", name, a.msg.Result, err)
	}
	return r
}

func (r toolResult) text() string {
	var parts []string
	for _, c := range r.Content {
		parts = append(parts, c.Text)
	}
	return strings.Join(parts, "\n")
}

// rest calls the REST API of the same process with the injected credential.
func (s *server) rest(t testing.TB, method, path, body string, v any) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}
