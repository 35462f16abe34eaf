package helpdesk_test

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
)

const token = "SENTINEL-helpdesk-token"

func start(t *testing.T) (*helpdesk.API, *httptest.Server, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	api, err := helpdesk.New(helpdesk.Config{Token: token, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return api, srv, &logs
}

func call(t *testing.T, srv *httptest.Server, method, path, auth, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: body %q is not JSON: %v", method, path, data, err)
		}
	}
	return resp.StatusCode, out
}

func TestNewNeedsAToken(t *testing.T) {
	if _, err := helpdesk.New(helpdesk.Config{}); err == nil || !strings.Contains(err.Error(), helpdesk.TokenEnv) {
		t.Errorf("New without a token: %v", err)
	}
}

func TestOnlyTheInjectedTokenIsAccepted(t *testing.T) {
	_, srv, logs := start(t)
	for _, auth := range []string{"", "Bearer agent-own-token", token, "Bearer " + token + "x", "bearer " + token} {
		if status, _ := call(t, srv, "GET", "/v1/tickets", auth, ""); status != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d, want 401", auth, status)
		}
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/tickets", nil)
	req.Header.Add("Authorization", "Bearer "+token)
	req.Header.Add("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("two Authorization headers: status %d, want 401", resp.StatusCode)
	}
	if status, _ := call(t, srv, "GET", "/v1/tickets", "Bearer "+token, ""); status != http.StatusOK {
		t.Errorf("the injected token: status %d", status)
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the log shows the token")
	}
	for _, want := range []string{`"credential":"missing"`, `"credential":"wrong"`, `"credential":"injected"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, logs.String())
		}
	}
}

func TestTickets(t *testing.T) {
	api, srv, _ := start(t)
	auth := "Bearer " + token
	status, body := call(t, srv, "GET", "/v1/tickets?status=open&limit=2", auth, "")
	tickets, _ := body["tickets"].([]any)
	if status != 200 || len(tickets) != 2 || tickets[0].(map[string]any)["id"] != "4711" {
		t.Fatalf("list: %d %v", status, body)
	}
	for _, q := range []string{"?status=all", "?limit=0", "?limit=101", "?limit=x", "?include_deleted=true"} {
		if status, _ := call(t, srv, "GET", "/v1/tickets"+q, auth, ""); status != 400 {
			t.Errorf("list %s: status %d, want 400", q, status)
		}
	}
	if status, body := call(t, srv, "GET", "/v1/tickets/4711", auth, ""); status != 200 || body["subject"] == nil {
		t.Errorf("get: %d %v", status, body)
	}
	if status, _ := call(t, srv, "GET", "/v1/tickets/1", auth, ""); status != 404 {
		t.Errorf("get unknown: %d", status)
	}
	if status, body := call(t, srv, "POST", "/v1/tickets/4711/comments", auth, `{"body":"Restarted the VPN client."}`); status != 201 || body["id"] != float64(1) {
		t.Errorf("comment: %d %v", status, body)
	}
	if tk, _ := api.Ticket("4711"); len(tk.Comments) != 1 {
		t.Errorf("comments %v", tk.Comments)
	}
	for _, b := range []string{`{"body":""}`, `{"body":"x","visibility":"public"}`, `{"body":"x"} {}`, `nope`} {
		if status, _ := call(t, srv, "POST", "/v1/tickets/4711/comments", auth, b); status != 400 {
			t.Errorf("comment %s: status %d, want 400", b, status)
		}
	}
	if status, _ := call(t, srv, "DELETE", "/v1/tickets/4714", auth, ""); status != 204 {
		t.Errorf("delete: %d", status)
	}
	if _, ok := api.Ticket("4714"); ok {
		t.Error("the deleted ticket is still there")
	}
}

func TestPasswordReset(t *testing.T) {
	api, srv, logs := start(t)
	auth := "Bearer " + token
	status, body := call(t, srv, "POST", "/v1/users/jdoe/password-reset", auth, `{"reason":"Locked out after travel","notify_user":true}`)
	if status != 200 || body["status"] != "reset" || body["notified"] != true {
		t.Fatalf("reset: %d %v", status, body)
	}
	if status, _ := call(t, srv, "POST", "/v1/users/nobody/password-reset", auth, `{"reason":"x"}`); status != 404 {
		t.Errorf("unknown user: %d", status)
	}
	if status, _ := call(t, srv, "POST", "/v1/users/jdoe/password-reset", auth, `{"notify_user":true}`); status != 400 {
		t.Errorf("no reason: %d", status)
	}
	if status, _ := call(t, srv, "POST", "/v1/users/jdoe/password-reset", "Bearer agent-own-token", `{"reason":"x"}`); status != 401 {
		t.Errorf("agent's own token: %d", status)
	}
	resets := api.Resets()
	if len(resets) != 1 || resets[0].Username != "jdoe" || !resets[0].NotifyUser {
		t.Errorf("resets %+v", resets)
	}
	if !strings.Contains(logs.String(), "password reset performed") {
		t.Error("the reset is not logged")
	}
}

func TestGuardPutsAnotherHandlerBehindTheToken(t *testing.T) {
	var logs bytes.Buffer
	api, err := helpdesk.New(helpdesk.Config{Token: token, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	reached := 0
	srv := httptest.NewServer(api.Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		w.WriteHeader(http.StatusTeapot)
	})))
	t.Cleanup(srv.Close)
	for _, auth := range []string{"", "Bearer agent-own-token", "Bearer " + token + "x"} {
		status, body := call(t, srv, "POST", "/mcp", auth, "")
		if status != http.StatusUnauthorized || body["code"] != "unauthenticated" {
			t.Errorf("Authorization %q: %d %v, want 401 unauthenticated", auth, status, body)
		}
	}
	if reached != 0 {
		t.Fatalf("the guarded handler was reached %d times without the token", reached)
	}
	if status, _ := call(t, srv, "POST", "/mcp", "Bearer "+token, ""); status != http.StatusTeapot || reached != 1 {
		t.Errorf("with the token: status %d, reached %d", status, reached)
	}
	if !strings.Contains(logs.String(), `"path":"/mcp"`) || !strings.Contains(logs.String(), `"status":418`) {
		t.Errorf("the guarded requests are not logged:\n%s", logs.String())
	}
}

// What AddComment adds the REST routes show, and what the REST routes add Ticket and Tickets show.
func TestAccessorsShareTheRESTData(t *testing.T) {
	api, srv, _ := start(t)
	auth := "Bearer " + token
	c, ok := api.AddComment("4712", "Called the user back.")
	if !ok || c.ID != 1 {
		t.Fatalf("AddComment: %+v %v", c, ok)
	}
	if _, ok := api.AddComment("9999", "x"); ok {
		t.Error("AddComment on an unknown ticket succeeded")
	}
	_, body := call(t, srv, "GET", "/v1/tickets/4712", auth, "")
	if cs, _ := body["comments"].([]any); len(cs) != 1 || cs[0].(map[string]any)["body"] != "Called the user back." {
		t.Errorf("REST does not show the comment: %v", body)
	}
	call(t, srv, "POST", "/v1/tickets/4712/comments", auth, `{"body":"Second."}`)
	if tk, _ := api.Ticket("4712"); len(tk.Comments) != 2 || tk.Comments[1].ID != 2 {
		t.Errorf("Ticket does not show the REST comment: %+v", tk.Comments)
	}
	var ids []string
	for _, tk := range api.Tickets("open", 2) {
		ids = append(ids, tk.ID)
	}
	if strings.Join(ids, ",") != "4711,4712" {
		t.Errorf("Tickets(open, 2): %v", ids)
	}
	if n := len(api.Tickets("", helpdesk.MaxLimit)); n != 5 {
		t.Errorf("Tickets(any, max): %d tickets, want 5", n)
	}
	if got := api.Tickets("closed", 0); len(got) != 0 {
		t.Errorf("Tickets(closed, 0): %v", got)
	}
	if _, ok := api.ResetPassword("nobody", "reason enough", false); ok {
		t.Error("ResetPassword of an unknown user succeeded")
	}
	if pr, ok := api.ResetPassword("clee", "Locked out of the finance share", true); !ok || pr.Username != "clee" || len(api.Resets()) != 1 {
		t.Errorf("ResetPassword: %+v %v, resets %v", pr, ok, api.Resets())
	}
}
