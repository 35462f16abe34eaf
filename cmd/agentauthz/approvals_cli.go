package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// ApproverTokenEnv holds the approver's bearer token for `agentauthz approvals`.
const ApproverTokenEnv = "AGENTAUTHZ_APPROVER_TOKEN"

const approvalsLong = `List, show, approve or deny the requests a running agentauthz holds for approval.

  agentauthz approvals list [--state pending|approved|denied|expired|used] [--limit N] [--cursor C | --all]
  agentauthz approvals show ID
  agentauthz approvals approve ID [--comment TEXT]
  agentauthz approvals deny ID [--comment TEXT]

list prints the newest approvals, --limit of them (default 50), and how to list the next
page if there are more; --all lists them all, page by page.

Every command takes --url, the HTTP listener of agentauthz serve (default
http://127.0.0.1:9002), and the approver's token from $AGENTAUTHZ_APPROVER_TOKEN (or --token,
which other users of this machine may see in the process list).

Exit status: 0 done, 3 refused by the server (not signed in, not an approver, no such approval,
already decided, expired), 1 the server could not be reached or cannot decide now, 2 bad usage.
`

// approvalsClient calls the approval API of a running agentauthz.
type approvalsClient struct {
	base  string
	token string
	http  *http.Client
}

// apiError is a refusal by the server, said in one line.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// approvalsOptions are the flags of agentauthz approvals: --url and --token for every
// command, the others for the command that has them.
type approvalsOptions struct {
	base, token            string
	state, cursor, comment string
	limit                  int
	all                    bool
}

func (o *approvalsOptions) addCommonFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.base, "url", "http://127.0.0.1:9002", "base URL of agentauthz's HTTP listener")
	fs.StringVar(&o.token, "token", "", "approver's bearer token (default $"+ApproverTokenEnv+")")
}

func (o *approvalsOptions) addFlags(fs *pflag.FlagSet, sub string) {
	switch sub {
	case "list":
		fs.StringVar(&o.state, "state", "", "list only approvals in this state: pending, approved, denied, expired or used")
		fs.IntVar(&o.limit, "limit", 50, "list at most this many approvals (1 to 500), the newest")
		fs.StringVar(&o.cursor, "cursor", "", "list the page after the one that printed this cursor")
		fs.BoolVar(&o.all, "all", false, "list every approval, page by page")
	case "approve", "deny":
		fs.StringVar(&o.comment, "comment", "", "a comment for the record (shown to the agent on a denial)")
	}
}

// runApprovals runs approvals sub (list, show, approve or deny) with the arguments pos.
func runApprovals(sub string, o *approvalsOptions, pos []string, stdout, stderr io.Writer) int {
	state, comment, cursor, limit, all, base, token := &o.state, &o.comment, &o.cursor, &o.limit, &o.all, &o.base, &o.token
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "agentauthz approvals %s: %s\n", sub, fmt.Sprintf(format, a...))
		return exitUsage
	}
	wantArgs := 1
	if sub == "list" {
		wantArgs = 0
	}
	switch {
	case len(pos) > wantArgs:
		return fail("unexpected argument %q", pos[wantArgs])
	case len(pos) < wantArgs:
		return fail("which approval? give its id (apr_...), as agentauthz approvals list shows it")
	}
	id := ""
	if wantArgs == 1 {
		if id = pos[0]; !approval.ValidID(id) {
			return fail("%q is not an approval id (apr_ and 26 letters and digits)", approval.Visible(id))
		}
	}
	if *state != "" && !approval.ValidState(approval.State(*state)) {
		return fail("--state %q: use pending, approved, denied, expired or used", approval.Visible(*state))
	}
	if sub == "list" && (*limit < 1 || *limit > 500) {
		return fail("--limit %d: list 1 to 500 approvals at a time", *limit)
	}
	if *cursor != "" {
		if _, err := approval.ParseCursor(*cursor); err != nil {
			return fail("--cursor %q is not a cursor agentauthz approvals list printed", approval.Visible(*cursor))
		}
		if *all {
			return fail("--cursor and --all go separately")
		}
	}
	if len(*comment) > 2000 {
		return fail("--comment is longer than 2000 bytes")
	}
	u, err := url.Parse(*base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fail("--url %q is not an http:// or https:// URL of agentauthz's HTTP listener", approval.Visible(*base))
	}
	if *token == "" {
		*token = os.Getenv(ApproverTokenEnv)
	}
	if *token == "" {
		return fail("no approver token: set %s (or pass --token)", ApproverTokenEnv)
	}
	c := &approvalsClient{base: strings.TrimRight(u.String(), "/"), token: *token, http: &http.Client{Timeout: 15 * time.Second}}

	switch sub {
	case "list":
		err = c.list(stdout, *state, *limit, *cursor, *all)
	case "show":
		err = c.show(stdout, id)
	default:
		err = c.decide(stdout, id, sub == "approve", *comment)
	}
	var refused *apiError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &refused) && refused.status != http.StatusServiceUnavailable && refused.status != http.StatusBadRequest:
		fmt.Fprintf(stderr, "agentauthz approvals %s: %s\n", sub, err)
		return exitDenied
	default:
		fmt.Fprintf(stderr, "agentauthz approvals %s: %s\n", sub, err)
		return exitError
	}
}

// do calls the API and decodes its JSON answer into out, or returns what the server refused.
func (c *approvalsClient) do(method, path string, body []byte, id string, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is said once, below
		}
		return fmt.Errorf("cannot reach agentauthz at %s: %v", approval.Visible(c.base), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %v", approval.Visible(c.base), err)
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s%s did not answer with the approval API's JSON; is --url agentauthz's HTTP listener?", approval.Visible(c.base), path)
		}
		return nil
	}
	var p struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}
	_ = json.Unmarshal(data, &p) // a server that is not agentauthz: the status says enough
	detail := strings.TrimSuffix(approval.Visible(singleLine(p.Detail)), ".")
	e := &apiError{status: resp.StatusCode}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		e.msg = "not signed in: the server refused the approver token (check " + ApproverTokenEnv + " or --token)"
	case http.StatusForbidden:
		e.msg = "forbidden"
		if detail != "" {
			e.msg += ": " + detail
		}
	case http.StatusNotFound:
		e.msg = "no approval " + id + " on this server"
		if id == "" || p.Code != "not_found" {
			e.msg = fmt.Sprintf("%s%s: not found; is --url agentauthz's HTTP listener, with the approval API?", approval.Visible(c.base), path)
		}
	case http.StatusConflict:
		e.msg = id + " was already decided"
	case http.StatusGone:
		e.msg = id + " expired before it was decided; the agent must ask again"
	case http.StatusServiceUnavailable:
		e.msg = "the server cannot decide now (" + detail + "); retry later"
	default:
		e.msg = fmt.Sprintf("the server answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		if detail != "" {
			e.msg += ": " + detail
		}
	}
	return e
}

// list prints a page of approvals, newest first: limit of them after cursor, or, with all,
// every page in turn. After a page with more behind it, it says how to list the next.
func (c *approvalsClient) list(w io.Writer, state string, limit int, cursor string, all bool) error {
	var approvals []approval.Approval
	more, next := 0, cursor
	for {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if state != "" {
			q.Set("state", state)
		}
		if next != "" {
			q.Set("cursor", next)
		}
		var out struct {
			Approvals  []approval.Approval `json:"approvals"`
			More       int                 `json:"more"`
			NextCursor string              `json:"next_cursor"`
		}
		if err := c.do(http.MethodGet, "/v1/approvals?"+q.Encode(), nil, "", &out); err != nil {
			return err
		}
		approvals = append(approvals, out.Approvals...)
		more, next = out.More, out.NextCursor
		if !all || more == 0 || next == "" {
			break
		}
	}
	if len(approvals) == 0 {
		switch {
		case cursor != "":
			fmt.Fprintln(w, "No more approvals.")
		case state != "":
			fmt.Fprintf(w, "No %s approvals.\n", state)
		default:
			fmt.Fprintln(w, "No approvals.")
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tUNTIL\tRULE\tAGENT\tREQUEST")
	for _, a := range approvals {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", approval.Visible(a.ID), approval.Visible(string(a.State)), until(a), approval.Visible(a.Rule), approval.Visible(a.Agent), requestLine(a))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if more > 0 && next != "" {
		if _, err := approval.ParseCursor(next); err != nil {
			return fmt.Errorf("the server answered a cursor that is not one: %q", approval.Visible(next))
		}
		flags := ""
		if state != "" {
			flags = " --state " + state
		}
		fmt.Fprintf(w, "%d more, older; the next page: agentauthz approvals list%s --limit %d --cursor %s\n", more, flags, limit, next)
	}
	return nil
}

func (c *approvalsClient) show(w io.Writer, id string) error {
	var a approval.Approval
	if err := c.do(http.MethodGet, "/v1/approvals/"+id, nil, id, &a); err != nil {
		return err
	}
	printApproval(w, a)
	return nil
}

func (c *approvalsClient) decide(w io.Writer, id string, approve bool, comment string) error {
	verb := "deny"
	if approve {
		verb = "approve"
	}
	body, _ := json.Marshal(map[string]string{"comment": comment}) // a string map always marshals
	var a approval.Approval
	if err := c.do(http.MethodPost, "/v1/approvals/"+id+"/"+verb, body, id, &a); err != nil {
		var refused *apiError
		if errors.As(err, &refused) && refused.status == http.StatusConflict {
			// Say what became of it, if the server can tell.
			if c.do(http.MethodGet, "/v1/approvals/"+id, nil, id, &a) == nil && a.DecidedBy != "" {
				refused.msg = fmt.Sprintf("%s was already %s by %s at %s", id, approval.Visible(string(a.State)), approval.Visible(a.DecidedBy), stamp(a.DecidedAt))
				if a.State == approval.Used || a.State == approval.Expired {
					refused.msg = fmt.Sprintf("%s was already decided by %s at %s, and is now %s", id, approval.Visible(a.DecidedBy), stamp(a.DecidedAt), approval.Visible(string(a.State)))
				}
			}
		}
		return err
	}
	if approve {
		fmt.Fprintf(w, "Approved %s: %s for %s. The agent may send it once, until %s.\n",
			approval.Visible(a.ID), requestLine(a), approval.Visible(a.Agent), stamp(a.UseBy))
	} else {
		fmt.Fprintf(w, "Denied %s: %s for %s.\n", approval.Visible(a.ID), requestLine(a), approval.Visible(a.Agent))
	}
	return nil
}

func printApproval(w io.Writer, a approval.Approval) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("Approval", approval.Visible(a.ID))
	st := approval.Visible(string(a.State))
	switch a.State {
	case approval.Pending:
		st += " (expires " + stamp(a.ExpiresAt) + ")"
	case approval.Approved:
		st += " (usable once until " + stamp(a.UseBy) + ")"
	}
	row("State", st)
	row("Agent", approval.Visible(a.Agent))
	row("Request", requestLine(a))
	row("Rule", approval.Visible(a.Rule))
	row("Reason", approval.Visible(a.Reason))
	row("Approvers", approval.Visible(strings.Join(a.Approvers, ", ")))
	row("Requested", stamp(a.CreatedAt))
	if !a.DecidedAt.IsZero() {
		verb := "Approved"
		if a.State == approval.Denied {
			verb = "Denied"
		}
		row(verb, stamp(a.DecidedAt)+" by "+approval.Visible(a.DecidedBy))
	}
	row("Comment", approval.Visible(singleLine(a.Comment)))
	if !a.UsedAt.IsZero() {
		row("Used", stamp(a.UsedAt))
	}
	row("Digest", approval.Visible(a.Digest))
	_ = tw.Flush() // w is the caller's: a failing stdout has nowhere to be reported
	if a.Body != "" {
		ct := a.ContentType
		if ct == "" {
			ct = "no content-type"
		}
		fmt.Fprintf(w, "Body (%s):\n", approval.Visible(ct))
		for _, line := range strings.Split(a.Body, "\n") {
			fmt.Fprintf(w, "  %s\n", approval.Visible(line))
		}
	}
}

// until is when an approval next lapses, if it can.
func until(a approval.Approval) string {
	switch a.State {
	case approval.Pending:
		return stamp(a.ExpiresAt)
	case approval.Approved:
		return stamp(a.UseBy)
	}
	return "-"
}

func requestLine(a approval.Approval) string {
	return approval.Visible(a.Method + " " + a.Host + a.Path)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func singleLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
