package console_test

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// historyHold stores an approval of agent under rule, held at at and, unless state is pending,
// decided into state a minute later.
func historyHold(t testing.TB, store approval.Store, agent, rule string, at time.Time, state approval.State) approval.Approval {
	t.Helper()
	a, _, err := store.Hold(context.Background(), approval.Approval{ID: approval.NewID(), Agent: agent, Digest: approval.NewID(),
		Rule: rule, Condition: "body.amount > 1000", Method: "POST", Host: "helpdesk.acme.internal", Path: "/v1/x",
		Approvers: []string{"group:it-admins"}, CreatedAt: at, ExpiresAt: at.Add(24 * time.Hour), UseWithin: 24 * time.Hour}, nil, approval.Limits{}, at)
	if err != nil {
		t.Fatal(err)
	}
	if state == approval.Approved || state == approval.Denied {
		if a, err = store.Decide(context.Background(), a.ID, approval.Verdict{Approve: state == approval.Approved, By: "alice"}, at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// TestConsoleHistory: the console lists decided requests too, narrowed by state, agent, rule and
// when they were held, in pages that read on where the last one ended; a bad filter is a 400.
func TestConsoleHistory(t *testing.T) {
	srv, store := newConsoleServer(t, false)
	base := time.Now().Add(-10 * time.Hour).UTC().Truncate(time.Second)
	const helpdesk, bi = "spiffe://acme.internal/agent/helpdesk", "spiffe://acme.internal/agent/bi"
	var all []approval.Approval
	for i := range 30 { // held ten minutes apart, the newest last
		agent, rule, state := helpdesk, "reset-password", approval.Approved
		if i%3 == 0 {
			agent = bi
		}
		if i%2 == 0 {
			rule = "refund"
		}
		switch i % 5 {
		case 0:
			state = approval.Denied
		case 1:
			state = approval.Pending
		}
		all = append(all, historyHold(t, store, agent, rule, base.Add(time.Duration(i)*10*time.Minute), state))
	}
	c := consoleSignIn(t, srv, consoleAliceToken)
	want := func(match func(approval.Approval) bool) []string {
		var ids []string
		for i := len(all) - 1; i >= 0; i-- { // newest first
			if a := all[i]; match(a) {
				ids = append(ids, a.ID)
			}
		}
		return ids
	}
	// list reads every page of a query, limit per page, and returns the ids in order.
	list := func(query url.Values, limit int) ([]string, int) {
		t.Helper()
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		q.Set("limit", strconv.Itoa(limit))
		var ids []string
		pages := 0
		for {
			resp, m := c.do("GET", "/approvals/api/approvals?"+q.Encode(), nil)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %v", q.Encode(), resp.StatusCode, m)
			}
			pages++
			for _, a := range m["approvals"].([]any) {
				item := a.(map[string]any)
				if item["condition"] != "body.amount > 1000" {
					t.Errorf("condition: %v", item["condition"])
				}
				ids = append(ids, item["id"].(string))
			}
			next, _ := m["next_cursor"].(string)
			if next == "" {
				return ids, pages
			}
			q.Set("cursor", next)
		}
	}
	from, to := base.Add(65*time.Minute), base.Add(200*time.Minute)
	for _, tc := range []struct {
		name  string
		q     url.Values
		match func(approval.Approval) bool
	}{
		{"pending, the default", url.Values{}, func(a approval.Approval) bool { return a.State == approval.Pending }},
		{"decided", url.Values{"state": {"decided"}}, func(a approval.Approval) bool { return a.State != approval.Pending }},
		{"denied", url.Values{"state": {"denied"}}, func(a approval.Approval) bool { return a.State == approval.Denied }},
		{"all of bi", url.Values{"state": {"all"}, "agent": {bi}}, func(a approval.Approval) bool { return a.Agent == bi }},
		{"decided refunds of the helpdesk", url.Values{"state": {"decided"}, "agent": {helpdesk}, "rule": {"refund"}},
			func(a approval.Approval) bool {
				return a.State != approval.Pending && a.Agent == helpdesk && a.Rule == "refund"
			}},
		{"approved within a time range", url.Values{"state": {"approved"}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}},
			func(a approval.Approval) bool {
				return a.State == approval.Approved && !a.CreatedAt.Before(from) && !a.CreatedAt.After(to)
			}},
		{"from only, in another zone", url.Values{"state": {"all"}, "from": {from.In(time.FixedZone("", 2*3600)).Format(time.RFC3339)}},
			func(a approval.Approval) bool { return !a.CreatedAt.Before(from) }},
	} {
		exp := want(tc.match)
		if len(exp) == 0 {
			t.Fatalf("%s: the test data matches nothing", tc.name)
		}
		for _, limit := range []int{2, 50} {
			got, pages := list(tc.q, limit)
			if !slices.Equal(got, exp) {
				t.Errorf("%s, %d a page: %d listed %v\nwant %d %v", tc.name, limit, len(got), got, len(exp), exp)
			}
			if limit == 2 && pages < (len(exp)+1)/2 {
				t.Errorf("%s: %d pages of 2 for %d approvals", tc.name, pages, len(exp))
			}
		}
	}
	for _, bad := range []string{"state=later", "from=yesterday", "to=2026-01-01", "agent=a&agent=b",
		"from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "rule=x&rule=y"} {
		resp, m := c.do("GET", "/approvals/api/approvals?"+bad, nil)
		if resp.StatusCode != 400 {
			t.Errorf("%s: %d %v, want 400", bad, resp.StatusCode, m["code"])
		}
	}
	// The history page is the console's page.
	resp, m := c.do("GET", "/approvals/history", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") == "" || !strings.Contains(m["_raw"].(string), `id="history"`) {
		t.Errorf("history page: %d", resp.StatusCode)
	}
}

// FuzzConsoleList sends the console's listing arbitrary queries: each is answered 200 with
// approvals that match every filter it names, or 400; never anything else.
func FuzzConsoleList(f *testing.F) {
	for _, q := range []string{"", "state=decided", "state=all&agent=spiffe://acme.internal/agent/bi&rule=refund",
		"from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00%2B02:00", "state=pending&limit=1&cursor=x", "agent=%00&rule=%ff",
		"state=decided&state=all", "from=2026-13-01T00:00:00Z", "limit=1&state=all&rule=refund"} {
		f.Add(q)
	}
	srv, store := newConsoleServer(f, false)
	base := time.Now().Add(-time.Hour)
	for i := range 6 {
		state := []approval.State{approval.Pending, approval.Approved, approval.Denied}[i%3]
		historyHold(f, store, "spiffe://acme.internal/agent/bi", []string{"refund", "reset-password"}[i%2], base.Add(time.Duration(i)*time.Minute), state)
	}
	c := consoleSignIn(f, srv, consoleAliceToken)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil || strings.ContainsAny(raw, "#") {
			return
		}
		ct := *c // the session, on this run's t
		ct.t = t
		resp, m := ct.do("GET", "/approvals/api/approvals?"+q.Encode(), nil)
		switch resp.StatusCode {
		case 400:
			return
		case 200:
		default:
			t.Fatalf("%q: %d %v", raw, resp.StatusCode, m)
		}
		for _, a := range m["approvals"].([]any) {
			item := a.(map[string]any)
			if v := q.Get("agent"); v != "" && item["agent"] != v {
				t.Errorf("%q lists agent %v", raw, item["agent"])
			}
			if v := q.Get("rule"); v != "" && item["rule"] != v {
				t.Errorf("%q lists rule %v", raw, item["rule"])
			}
			switch st := q.Get("state"); st {
			case "", "pending", "approved", "denied", "expired", "used":
				if st == "" {
					st = "pending"
				}
				if item["state"] != st {
					t.Errorf("%q lists state %v", raw, item["state"])
				}
			case "decided":
				if item["state"] == "pending" {
					t.Errorf("%q lists a pending approval", raw)
				}
			}
		}
	})
}
