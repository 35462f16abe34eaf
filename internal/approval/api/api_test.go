package api_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/approvaltest"
)

// The server, policy, agents and approvers of the tests (approvaltest).
const (
	payer      = approvaltest.Payer
	other      = approvaltest.Other
	apiHost    = approvaltest.APIHost
	apiToken   = approvaltest.APIToken
	aliceToken = approvaltest.AliceToken
	bobToken   = approvaltest.BobToken
	carolToken = approvaltest.CarolToken
)

type (
	options = approvaltest.Options
	request = approvaltest.Request
)

var (
	start    = approvaltest.Start
	transfer = approvaltest.Transfer
	reset    = approvaltest.Reset
)

type authFunc func(*http.Request) (approval.Approver, error)

func (f authFunc) Authenticate(r *http.Request) (approval.Approver, error) { return f(r) }

// TestAPIAuthentication: every call needs an approver's token.
func TestAPIAuthentication(t *testing.T) {
	h := start(t, options{})
	id := h.Held(reset(payer, "root"), "pending")
	calls := [][2]string{
		{"GET", "/v1/approvals"},
		{"GET", "/v1/approvals?state=pending"},
		{"GET", "/v1/approvals/" + id},
		{"POST", "/v1/approvals/" + id + "/approve"},
		{"POST", "/v1/approvals/" + id + "/deny"},
		{"GET", "/v1/approvals/apr_nonsense"},
	}
	for _, c := range calls {
		for _, auth := range []string{"", "Bearer wrong", "Basic YWxpY2U6YWxpY2UtdG9rZW4=", "Bearer " + strings.ToUpper(aliceToken), aliceToken} {
			req, _ := http.NewRequest(c[0], h.Base+c[1], nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var p map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
			if resp.StatusCode != 401 || p["code"] != "unauthenticated" || !strings.HasPrefix(resp.Header.Get("www-authenticate"), "Bearer ") ||
				resp.Header.Get("content-type") != "application/problem+json" {
				t.Errorf("%s %s with %q: %d %v %v", c[0], c[1], auth, resp.StatusCode, resp.Header, p)
			}
		}
	}
	if _, g := h.Call("GET", "/v1/approvals/"+id, aliceToken, ""); g["state"] != "pending" {
		t.Errorf("after refused calls the approval is %v, want pending", g["state"])
	}
}

// TestAPIWorkloadsAndFailures: a workload identity may not use the API even if an authenticator
// vouches for it; an authenticator that fails is a 503, not a pass.
func TestAPIWorkloadsAndFailures(t *testing.T) {
	as := func(name string, groups ...string) api.Authenticator {
		return authFunc(func(r *http.Request) (approval.Approver, error) {
			if r.Header.Get("Authorization") == "" {
				return approval.Approver{}, api.ErrUnauthenticated
			}
			return approval.Approver{Name: name, Groups: groups}, nil
		})
	}
	for _, name := range []string{payer, "SPIFFE://example.test/agent/payer", "spiffe://example.test/human"} {
		h := start(t, options{Auth: as(name, "it-admins")})
		id := h.Held(reset(payer, "root"), "pending")
		for _, c := range [][2]string{{"GET", "/v1/approvals"}, {"GET", "/v1/approvals/" + id}, {"POST", "/v1/approvals/" + id + "/approve"}} {
			if st, p := h.Call(c[0], c[1], "x", ""); st != 403 || p["code"] != "forbidden" {
				t.Errorf("%s as %s: %d %v; want 403", c[0], name, st, p)
			}
		}
		h.Held(reset(payer, "root"), "pending")
	}
	broken := authFunc(func(*http.Request) (approval.Approver, error) { return approval.Approver{}, errors.New("idp down") })
	h := start(t, options{Auth: broken})
	if st, p := h.Call("GET", "/v1/approvals", "x", ""); st != 503 || p["code"] != "internal_error" {
		t.Errorf("authenticator failing: %d %v; want 503", st, p)
	}
}

// TestAPIList: approvals are listed by state, newest first; a bad state is a 400.
func TestAPIList(t *testing.T) {
	h := start(t, options{})
	ids := map[string]string{}
	ids["used"] = h.Held(transfer(payer, `{"amount":1001,"to":"A"}`), "pending")
	h.Clock.Advance(1)
	ids["denied"] = h.Held(transfer(payer, `{"amount":1002,"to":"A"}`), "pending")
	h.Clock.Advance(1)
	ids["approved"] = h.Held(transfer(payer, `{"amount":1003,"to":"A"}`), "pending")
	h.Clock.Advance(1)
	ids["expired"] = h.Held(reset(payer, "root"), "pending")
	h.Clock.Advance(9 * 60e9)
	ids["pending"] = h.Held(transfer(payer, `{"amount":1004,"to":"A"}`), "pending")
	ids["pending2"] = h.Held(transfer(other, `{"amount":1004,"to":"A"}`), "pending")
	h.Clock.Advance(60e9) // reset's approve_within (10m) passes; transfer's (15m) does not
	for _, st := range []string{"used", "approved"} {
		if h.Approve(ids[st], aliceToken) != 200 {
			t.Fatal("approve failed")
		}
	}
	if st, _ := h.Call("POST", "/v1/approvals/"+ids["denied"]+"/deny", aliceToken, ""); st != 200 {
		t.Fatal("deny failed")
	}
	if a := h.Check(transfer(payer, `{"amount":1001,"to":"A"}`, ids["used"])); !a.Allow {
		t.Fatalf("use: %v", a)
	}

	list := func(query string) []string {
		t.Helper()
		st, body := h.Call("GET", "/v1/approvals"+query, bobToken, "")
		if st != 200 {
			t.Fatalf("GET /v1/approvals%s: %d %v", query, st, body)
		}
		raw, ok := body["approvals"].([]any)
		if !ok {
			t.Fatalf("GET /v1/approvals%s: approvals is %T, want a list", query, body["approvals"])
		}
		var out []string
		for _, x := range raw {
			a := x.(map[string]any)
			if q := strings.TrimPrefix(query, "?state="); q != "" && a["state"] != q {
				t.Errorf("GET /v1/approvals%s lists %s in state %v", query, a["id"], a["state"])
			}
			out = append(out, a["id"].(string))
		}
		return out
	}
	for _, tc := range []struct {
		state string
		want  []string
	}{
		{"pending", []string{ids["pending"], ids["pending2"]}},
		{"approved", []string{ids["approved"]}},
		{"denied", []string{ids["denied"]}},
		{"expired", []string{ids["expired"]}},
		{"used", []string{ids["used"]}},
	} {
		got := list("?state=" + tc.state)
		slices.Sort(got)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("state=%s lists %v, want %v", tc.state, got, tc.want)
		}
	}
	all := list("")
	if len(all) != 6 || all[len(all)-1] != ids["used"] || all[len(all)-2] != ids["denied"] {
		t.Errorf("all approvals, newest first: %v", all)
	}
	for _, bad := range []string{"?state=bogus", "?state=PENDING", "?state=pending,approved", "?state=%00"} {
		if st, p := h.Call("GET", "/v1/approvals"+bad, aliceToken, ""); st != 400 || p["code"] != "bad_state" {
			t.Errorf("GET /v1/approvals%s: %d %v; want 400 bad_state", bad, st, p)
		}
	}
	// An empty list is [], not null.
	h2 := start(t, options{})
	if _, body := h2.Call("GET", "/v1/approvals?state=used", aliceToken, ""); body["approvals"] == nil {
		t.Errorf("empty list: %v", body)
	}
}

// TestAPIShow: an approver sees what was asked, who asked and why, with redacted fields hidden;
// never the raw body.
func TestAPIShow(t *testing.T) {
	h := start(t, options{})
	body := `{"to":"DE89 3704","amount":5000,"secret":"hunter2","card":{"number":"4111-hunter2","holder":"J Doe"},"note":"rent"}`
	id := h.Held(transfer(payer, body), "pending")
	st, a := h.Call("GET", "/v1/approvals/"+id, bobToken, "")
	if st != 200 {
		t.Fatalf("GET: %d %v", st, a)
	}
	for k, want := range map[string]any{
		"id": id, "state": "pending", "agent": payer, "method": "POST", "host": apiHost, "path": "/v1/transfers",
		"rule": "transfer", "reason": "Large transfers need a second pair of eyes.", "content_type": "application/json",
		"created_at": "2026-03-01T12:00:00Z", "expires_at": "2026-03-01T12:15:00Z",
	} {
		if a[k] != want {
			t.Errorf("%s = %v, want %v", k, a[k], want)
		}
	}
	if ap, _ := a["approvers"].([]any); len(ap) != 1 || ap[0] != "group:finance" {
		t.Errorf("approvers = %v", a["approvers"])
	}
	shown, _ := a["body"].(string)
	wantBody := "{\n  \"amount\": 5000,\n  \"card\": {\n    \"holder\": \"J Doe\",\n    \"number\": \"[redacted]\"\n  },\n" +
		"  \"note\": \"rent\",\n  \"secret\": \"[redacted]\",\n  \"to\": \"DE89 3704\"\n}"
	if shown != wantBody {
		t.Errorf("body shown:\n%s\nwant:\n%s", shown, wantBody)
	}
	for _, path := range []string{"/v1/approvals/" + id, "/v1/approvals", "/v1/approvals?state=pending"} {
		req, _ := http.NewRequest("GET", h.Base+path, nil)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var raw json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&raw)
		resp.Body.Close()
		if strings.Contains(string(raw), "hunter2") || strings.Contains(string(raw), apiToken) {
			t.Errorf("GET %s shows a redacted value: %s", path, raw)
		}
	}
	if announced := h.Announced(); len(announced) != 1 || strings.Contains(announced[0].Body, "hunter2") {
		t.Errorf("announced %+v", announced)
	}

	for _, p := range []string{"/v1/approvals/" + approval.NewID(), "/v1/approvals/apr_x", "/v1/approvals/" + strings.ToUpper(id), "/v1/approvals/%27%20OR%201=1"} {
		if st, g := h.Call("GET", p, aliceToken, ""); st != 404 || g["code"] != "not_found" {
			t.Errorf("GET %s: %d %v; want 404", p, st, g)
		}
	}
}

// TestAPIDecide: only the route's approvers decide, once, with an optional comment.
func TestAPIDecide(t *testing.T) {
	h := start(t, options{})
	root := h.Held(reset(payer, "root"), "pending")                       // group:it-admins, user:carol
	big := h.Held(transfer(payer, `{"amount":5000,"to":"A"}`), "pending") // group:finance
	del := h.Held(request{Agent: payer, Method: "DELETE", Path: "/v1/things/7", Headers: map[string]string{}}, "pending")

	for _, tc := range []struct {
		id, token string
		status    int
	}{
		{root, bobToken, 403},
		{big, bobToken, 403},
		{big, carolToken, 403}, // carol is named on reset, not on transfer
		{del, aliceToken, 403}, // user:carol only
	} {
		if st, p := h.Call("POST", "/v1/approvals/"+tc.id+"/approve", tc.token, ""); st != tc.status || p["code"] != "forbidden" {
			t.Errorf("approve %s with %s: %d %v; want %d", tc.id, tc.token, st, p, tc.status)
		}
		if st, _ := h.Call("POST", "/v1/approvals/"+tc.id+"/deny", tc.token, ""); st != tc.status {
			t.Errorf("deny %s with %s: %d; want %d", tc.id, tc.token, st, tc.status)
		}
	}
	if _, g := h.Call("GET", "/v1/approvals/"+root, bobToken, ""); g["state"] != "pending" {
		t.Fatalf("after refused decisions: %v", g["state"])
	}

	for _, bad := range []string{`{"comment":1}`, `{"comment":"a","extra":true}`, `not json`, `{"comment":"a"} {"comment":"b"}`, `[]`,
		`{"comment":"` + strings.Repeat("a", 2001) + `"}`} {
		if st, p := h.Call("POST", "/v1/approvals/"+root+"/approve", carolToken, bad); st != 400 || p["code"] != "bad_request" {
			t.Errorf("approve with body %.40q: %d %v; want 400", bad, st, p)
		}
	}
	if st, p := h.Call("POST", "/v1/approvals/"+approval.NewID()+"/approve", carolToken, ""); st != 404 || p["code"] != "not_found" {
		t.Errorf("approve an unknown id: %d %v", st, p)
	}
	if st, _ := h.Call("POST", "/v1/approvals/nonsense/approve", carolToken, ""); st != 404 {
		t.Errorf("approve a malformed id: %d", st)
	}

	st, a := h.Call("POST", "/v1/approvals/"+root+"/approve", carolToken, `{"comment":"`+strings.Repeat("é", 1000)+`"}`)
	if st != 200 || a["state"] != "approved" || a["decided_by"] != "carol" || a["decided_at"] != "2026-03-01T12:00:00Z" ||
		a["use_by"] != "2026-03-01T12:05:00Z" {
		t.Fatalf("carol approves: %d %v", st, a)
	}
	for _, verb := range []string{"approve", "deny"} {
		if st, p := h.Call("POST", "/v1/approvals/"+root+"/"+verb, aliceToken, ""); st != 409 || p["code"] != "not_pending" {
			t.Errorf("%s after approval: %d %v; want 409", verb, st, p)
		}
	}
	if st, a := h.Call("POST", "/v1/approvals/"+big+"/deny", aliceToken, "  "); st != 200 || a["state"] != "denied" || a["decided_by"] != "alice" {
		t.Errorf("alice denies: %d %v", st, a)
	}
	if st, _ := h.Call("POST", "/v1/approvals/"+big+"/approve", aliceToken, ""); st != 409 {
		t.Errorf("approve after denial: %d; want 409", st)
	}
	if st, _ := h.Call("POST", "/v1/approvals/"+del+"/approve", carolToken, ""); st != 200 {
		t.Errorf("carol (user:carol) approves the delete: %d", st)
	}
	var decided []string
	for _, a := range h.Decided() {
		decided = append(decided, a.ID+"="+string(a.State))
	}
	if want := []string{root + "=approved", big + "=denied", del + "=approved"}; !slices.Equal(decided, want) {
		t.Errorf("Decided told %v, want %v", decided, want)
	}
}

// TestAPIShowsInvisibleCharactersAsMarkers: what an agent sent with bidi controls, zero-width
// and other invisible characters in it, and an approver's comment with them, are answered with
// each as a visible \u{XXXX} marker: in the list, one approval and a decision.
func TestAPIShowsInvisibleCharactersAsMarkers(t *testing.T) {
	h := start(t, options{})
	body, err := json.Marshal(map[string]any{"amount": 5000, "to": "A", "note": approvaltest.Hostile()})
	if err != nil {
		t.Fatal(err)
	}
	id := h.Held(transfer(payer, string(body)), "pending")
	_, a := h.Call("GET", "/v1/approvals/"+id, bobToken, "")
	approvaltest.WantVisible(t, "GET /v1/approvals/{id}: body", approvaltest.StringOf(a["body"]), true)
	_, l := h.Call("GET", "/v1/approvals", bobToken, "")
	if list, _ := l["approvals"].([]any); len(list) != 1 {
		t.Fatalf("list: %v", l)
	} else {
		approvaltest.WantVisible(t, "GET /v1/approvals: body", approvaltest.StringOf(list[0].(map[string]any)["body"]), true)
	}
	comment, _ := json.Marshal(map[string]string{"comment": approvaltest.Hostile()})
	st, d := h.Call("POST", "/v1/approvals/"+id+"/deny", aliceToken, string(comment))
	if st != 200 {
		t.Fatalf("deny: %d %v", st, d)
	}
	approvaltest.WantVisible(t, "POST deny: comment", approvaltest.StringOf(d["comment"]), true)
	_, a = h.Call("GET", "/v1/approvals/"+id, bobToken, "")
	approvaltest.WantVisible(t, "GET /v1/approvals/{id}: comment", approvaltest.StringOf(a["comment"]), true)
	// What the store keeps is what was sent: only what approvers are shown is escaped.
	if got, err := h.Store.Get(t.Context(), id, h.Clock.Now()); err != nil || got.Comment != approvaltest.Hostile() {
		t.Errorf("stored comment %+q, %v", got.Comment, err)
	}
}

// TestAPIListPages: the list comes in pages, newest first: limit approvals (50 unless asked),
// "more" saying how many follow and "next_cursor" where the next page starts; a bad limit or
// cursor is a 400.
func TestAPIListPages(t *testing.T) {
	h := start(t, options{})
	var ids []string // oldest first
	for i := range 60 {
		now := h.Clock.Now()
		a, _, err := h.Store.Hold(t.Context(), approval.Approval{ID: approval.NewID(), Agent: payer, Digest: approval.NewID(),
			Rule: "transfer", Method: "POST", Host: apiHost, Path: "/v1/transfers", Approvers: []string{"group:finance"},
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, nil, approval.Limits{}, now)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ID)
		if i%2 == 1 {
			h.Clock.Advance(time.Second) // some share an instant: ordered by id
		}
	}
	var all []approval.Approval
	for _, id := range ids {
		a, _ := h.Store.Get(t.Context(), id, h.Clock.Now())
		all = append(all, a)
	}
	slices.SortFunc(all, approval.ListOrder)
	var want []string
	for _, a := range all {
		want = append(want, a.ID)
	}
	page := func(query string) ([]string, float64, string) {
		t.Helper()
		st, body := h.Call("GET", "/v1/approvals"+query, bobToken, "")
		if st != 200 {
			t.Fatalf("GET /v1/approvals%s: %d %v", query, st, body)
		}
		var got []string
		for _, x := range body["approvals"].([]any) {
			got = append(got, x.(map[string]any)["id"].(string))
		}
		more, _ := body["more"].(float64)
		next, _ := body["next_cursor"].(string)
		return got, more, next
	}
	got, more, next := page("")
	if !slices.Equal(got, want[:50]) || more != 10 || next == "" {
		t.Fatalf("first page by default: %d approvals, more %v, next %q; want the 50 newest, 10 more", len(got), more, next)
	}
	var listed []string
	for q := "?state=pending&limit=7"; ; {
		got, more, next := page(q)
		listed = append(listed, got...)
		if int(more) != len(want)-len(listed) || (more == 0) != (next == "") {
			t.Fatalf("page %s: more %v, next %q after %d listed", q, more, next, len(listed))
		}
		if more == 0 {
			break
		}
		q = "?state=pending&limit=7&cursor=" + url.QueryEscape(next)
	}
	if !slices.Equal(listed, want) {
		t.Errorf("pages by 7 together: %v\nwant %v", listed, want)
	}
	for _, bad := range []struct{ query, code string }{
		{"?limit=0", "bad_limit"}, {"?limit=501", "bad_limit"}, {"?limit=x", "bad_limit"}, {"?limit=07", "bad_limit"},
		{"?limit=5&limit=6", "bad_query"}, {"?cursor=nonsense", "bad_cursor"}, {"?cursor=1.000000000.apr_x", "bad_cursor"},
		{"?state=pending&state=used", "bad_query"},
	} {
		if st, p := h.Call("GET", "/v1/approvals"+bad.query, aliceToken, ""); st != 400 || p["code"] != bad.code {
			t.Errorf("GET /v1/approvals%s: %d %v; want 400 %s", bad.query, st, p, bad.code)
		}
	}
}
