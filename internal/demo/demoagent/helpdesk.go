package demoagent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

type ticket struct {
	ID        string `json:"id"`
	Subject   string `json:"subject"`
	Status    string `json:"status"`
	Requester string `json:"requester"`
	// The requester's contact details, which the helpdesk API sends and the demo policy's
	// response rule keeps from this agent.
	RequesterEmail *string `json:"requester_email"`
	RequesterPhone *string `json:"requester_phone"`
}

// contact says what the agent read of the requester's contact details.
func (t ticket) contact() string {
	switch {
	case t.RequesterEmail == nil && t.RequesterPhone == nil:
		return "no requester e-mail or phone (the response rule removed them)"
	case t.RequesterEmail != nil && t.RequesterPhone != nil:
		return "the requester's e-mail " + *t.RequesterEmail + " and phone " + *t.RequesterPhone
	case t.RequesterEmail != nil:
		return "the requester's e-mail " + *t.RequesterEmail
	}
	return "the requester's phone " + *t.RequesterPhone
}

// ResetReason is why the agent asks for the password reset; approvers see it.
const ResetReason = "User locked out after travel; identity verified by phone callback"

// helpdeskStory is the IT helpdesk agent's day: tickets, a comment, and a password reset that a
// human must approve.
func (a *agent) helpdeskStory(ctx context.Context) error {
	a.begin("helpdesk", "the IT helpdesk agent", a.cfg.Envoy)

	ans, err := a.do(ctx, call{name: "list open tickets", method: "GET", host: HelpdeskHost,
		path: "/v1/tickets?status=open&limit=10", startup: true})
	if err != nil {
		return err
	}
	if err := a.expect(ans, http.StatusOK, ""); err != nil {
		return err
	}
	var list struct {
		Tickets []ticket `json:"tickets"`
	}
	if err := decodeJSON(ans, &list); err != nil {
		return err
	}
	if len(list.Tickets) == 0 {
		return errors.New("no open tickets")
	}
	a.printf("    ← 200: %d open tickets\n", len(list.Tickets))
	chosen := list.Tickets[0]
	for _, t := range list.Tickets {
		a.printf("        #%s %q (%s)\n", t.ID, t.Subject, t.Requester)
		if strings.Contains(strings.ToLower(t.Subject), "password") && chosen == list.Tickets[0] {
			chosen = t
		}
	}

	ans, err = a.do(ctx, call{name: "read ticket #" + chosen.ID, method: "GET", host: HelpdeskHost, path: "/v1/tickets/" + chosen.ID})
	if err != nil {
		return err
	}
	if err := a.expect(ans, http.StatusOK, ""); err != nil {
		return err
	}
	var t ticket
	if err := decodeJSON(ans, &t); err != nil {
		return err
	}
	a.printf("    ← 200: %q, %s, requested by %s; %s\n", t.Subject, t.Status, t.Requester, t.contact())
	user := t.Requester
	if user == "" {
		user = "jdoe"
	}

	comment := fmt.Sprintf(`{"body":"Hi %s, I have asked IT to reset your password; you will get an e-mail once it is done."}`, user)
	ans, err = a.do(ctx, call{name: "comment on ticket #" + t.ID, method: "POST", host: HelpdeskHost,
		path: "/v1/tickets/" + t.ID + "/comments", body: comment})
	if err != nil {
		return err
	}
	if err := a.expect(ans, http.StatusCreated, ""); err != nil {
		return err
	}
	var c struct {
		ID int `json:"id"`
	}
	if err := decodeJSON(ans, &c); err != nil {
		return err
	}
	a.printf("    ← 201: comment %d added\n", c.ID)

	reset := call{name: "reset " + user + "'s password", method: "POST", host: HelpdeskHost,
		path: "/v1/users/" + user + "/password-reset",
		body: `{"reason":"` + ResetReason + `","notify_user":true}`}
	ans, err = a.do(ctx, reset)
	if err != nil {
		return err
	}
	if err := a.expect(ans, http.StatusPreconditionRequired, "approval_required"); err != nil {
		return err
	}
	id := ans.problem.ApprovalID
	if id == "" {
		return errors.New("the 428 names no approval_id")
	}
	a.instructions(id)

	ans, err = a.awaitApproval(ctx, reset, id)
	if err != nil {
		return err
	}
	var done struct {
		Status   string `json:"status"`
		Notified bool   `json:"notified"`
	}
	if err := decodeJSON(ans, &done); err != nil {
		return err
	}
	a.printf("    ← %d: %s's password %s (user notified: %v); approval %s is now used up\n", ans.status, user, done.Status, done.Notified, id)

	replay := reset
	replay.name, replay.approval = "replay the approved reset", id
	ans, err = a.do(ctx, replay)
	if err != nil {
		return err
	}
	if err := a.expect(ans, http.StatusForbidden, "approval_used"); err != nil {
		return err
	}
	a.printf("\n")
	return nil
}

// instructions tell the human what to do about a held request.
func (a *agent) instructions(id string) { a.instructionsFor(id, false) }

// instructionsFor tells how to approve id; mcp says the retry is the identical call with no
// header, as an MCP client makes it.
func (a *agent) instructionsFor(id string, mcp bool) {
	api := strings.TrimSuffix(a.cfg.ApprovalsURL, "/")
	a.printf("    Held as approval %s. An IT admin (group it-admins) must approve it, in one of:\n", id)
	a.printf("      console: %s/approvals/\n", api)
	a.printf("      CLI:     AGENTAUTHZ_APPROVER_TOKEN=<alice's token> agentauthz approvals approve %s --url %s\n", id, api)
	a.printf("      curl:    curl -X POST -H \"Authorization: Bearer <alice's token>\" %s/v1/approvals/%s/approve\n", api, id)
	a.printf("    (alice's token is AGENTAUTHZ_DEMO_APPROVER_TOKEN, or the approver_token agentauthz logged at start.)\n")
	if mcp {
		a.printf("    Waiting: repeating the identical call every %s, for up to %s.\n", a.cfg.PollInterval, a.cfg.ApprovalTimeout)
		return
	}
	a.printf("    Waiting: retrying the identical request with %s: %s every %s, for up to %s.\n",
		ApprovalHeader, id, a.cfg.PollInterval, a.cfg.ApprovalTimeout)
}

// awaitApproval retries the held request with the approval id until it goes through, is refused
// for good, or the wait times out.
func (a *agent) awaitApproval(ctx context.Context, held call, id string) (answer, error) {
	retry := held
	retry.name, retry.approval, retry.quiet = "retry with approval "+id, id, true
	start := time.Now()
	lastSaid := start
	for {
		select {
		case <-ctx.Done():
			return answer{}, ctx.Err()
		case <-time.After(a.cfg.PollInterval):
		}
		ans, err := a.do(ctx, retry)
		if err != nil {
			return ans, err
		}
		switch {
		case ans.status >= 200 && ans.status < 300:
			a.record(retry, ans)
			a.n++
			a.printf("%2d. %s (approved after %s)\n    %s %s%s with %s: %s\n", a.n, retry.name,
				time.Since(start).Round(time.Second), retry.method, retry.host, retry.path, ApprovalHeader, id)
			return ans, nil
		case ans.status == http.StatusPreconditionRequired:
			if time.Since(lastSaid) >= 30*time.Second {
				a.printf("    … still waiting for approval %s (%s so far)\n", id, time.Since(start).Round(time.Second))
				lastSaid = time.Now()
			}
		default:
			a.record(retry, ans)
			a.refusal(ans)
			return ans, fmt.Errorf("approval %s: %d %s", id, ans.status, ans.problem.Code)
		}
		if time.Since(start) > a.cfg.ApprovalTimeout {
			return ans, fmt.Errorf("approval %s was not decided within %s", id, a.cfg.ApprovalTimeout)
		}
	}
}
