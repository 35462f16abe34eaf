package slack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/throttle"
)

// Users maps Slack user ids to approvers, for the buttons of Slack messages. A click by a
// Slack user not in the map is refused.
type Users map[string]approval.Approver

var slackUserID = regexp.MustCompile(`^[UW][A-Z0-9]{2,}$`)

// ReadUsers reads a Slack users file (serve --slack-users), strictly, reporting every
// problem:
//
//	slack_users:
//	  - slack_user_id: U024BE7LH
//	    name: alice
//	    groups: [it-admins]
//
// name and groups are what the approval's approvers ("user:NAME", "group:NAME") are matched
// against, exactly as for the approvers file; the Slack user id is the one Slack sends with the
// click (a member's profile: ⋮ → Copy member ID).
func ReadUsers(path string) (Users, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		SlackUsers []struct {
			SlackUserID string   `yaml:"slack_user_id"`
			Name        string   `yaml:"name"`
			Groups      []string `yaml:"groups"`
		} `yaml:"slack_users"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: the file is empty: list slack_users", path)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: "), "\n", "; "))
	}
	users := Users{}
	var problems []string
	for i, u := range f.SlackUsers {
		switch {
		case !slackUserID.MatchString(u.SlackUserID):
			problems = append(problems, fmt.Sprintf("slack_users[%d]: slack_user_id %q is not a Slack member ID (U… or W…)", i, u.SlackUserID))
		case u.Name == "":
			problems = append(problems, fmt.Sprintf("slack_users[%d]: name is empty", i))
		case approval.IsWorkload(u.Name):
			problems = append(problems, fmt.Sprintf("slack_users[%d]: %s is a workload identity; approvers are people", i, u.Name))
		case users[u.SlackUserID].Name != "":
			problems = append(problems, fmt.Sprintf("slack_users[%d]: %s is listed twice", i, u.SlackUserID))
		default:
			users[u.SlackUserID] = approval.Approver{Name: u.Name, Groups: u.Groups}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
	}
	return users, nil
}

// InteractionsPath is where Slack sends button clicks (the app's Interactivity Request URL).
const InteractionsPath = "/v1/slack/interactions"

// slackWindow is how far a request's timestamp may be from now.
const slackWindow = 5 * time.Minute

// maxSlackBody bounds an interaction payload (it carries the whole message).
const maxSlackBody = 1 << 20

// Interactions is the endpoint for Slack's Approve and Deny buttons:
//
//	POST /v1/slack/interactions
//
// It accepts a request only if it carries Slack's v0 signature, spelt as Slack spells it, under
// the signing secret of a Slack notifier in force, made within 5 minutes, and not seen before
// (replayCache: keyed on the signature's bytes, bounded, and never full of one captured
// request). The clicking Slack user must be in Users and one of the approval's approvers; the
// decision then takes the approval API's path (the same store call, audit event with
// via=slack, and Decided hook). Anything else is refused with a 4xx and decides nothing.
type Interactions struct {
	// API decides: its Store, Events, Log, Clock and Decided are used.
	API   *api.API
	Users Users
	// Secrets returns the signing secrets accepted (SigningSecrets of the notifiers in force).
	Secrets func() []string
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time
	Log   *slog.Logger

	seen replayCache // the signatures accepted, until they leave the window
}

// Register adds the endpoint to mux.
func (s *Interactions) Register(mux *http.ServeMux) {
	mux.Handle("POST "+InteractionsPath, s)
}

func (s *Interactions) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

func (s *Interactions) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// slackInteraction is the part of Slack's block_actions payload that is used.
type slackInteraction struct {
	Type string `json:"type"`
	User struct {
		ID string `json:"id"`
	} `json:"user"`
	Actions []struct {
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
	} `json:"actions"`
}

// ServeHTTP implements http.Handler.
func (s *Interactions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		api.WriteProblem(w, http.StatusMethodNotAllowed, "method_not_allowed", "POST Slack interactions here.")
		return
	}
	var secrets []string
	if s.Secrets != nil {
		secrets = s.Secrets()
	}
	if len(secrets) == 0 {
		api.WriteProblem(w, http.StatusNotFound, "not_found", "No Slack notifier with a signing secret is configured.")
		return
	}
	// A forged or replayed request is a failed sign-in of its sender's address, which is
	// throttled; Slack's own requests never fail the signature, so Slack is never throttled.
	att, wait := s.API.Throttle.Begin(r, "slack")
	if att == nil {
		api.WriteThrottled(w, wait)
		return
	}
	defer att.Release() // unless it failed
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSlackBody+1))
	if err != nil || len(body) > maxSlackBody {
		api.WriteProblem(w, http.StatusRequestEntityTooLarge, "too_large", "The interaction payload is too large.")
		return
	}
	now := s.now()
	ts, tsText, sig, ok := readSigned(r.Header)
	if !ok {
		s.refuse(w, r, att, http.StatusUnauthorized, "bad_signature", "The request is not signed by Slack.", "no timestamp or signature, or not as Slack writes them")
		return
	}
	if d := now.Sub(time.Unix(ts, 0)); d > slackWindow || d < -slackWindow {
		s.refuse(w, r, att, http.StatusUnauthorized, "stale", "The request's timestamp is more than 5 minutes from now.", "stale timestamp")
		return
	}
	if !signedBy(secrets, tsText, body, sig) {
		s.refuse(w, r, att, http.StatusUnauthorized, "bad_signature", "The request is not signed by Slack.", "bad signature")
		return
	}
	switch s.seen.remember(sig, ts, now, slackWindow) {
	case errReplayed:
		s.refuse(w, r, att, http.StatusUnauthorized, "replayed", "This request was already received.", "replayed signature")
		return
	case errBusy:
		api.WriteProblem(w, http.StatusServiceUnavailable, "busy", "Too many Slack interactions; retry later.")
		return
	}

	form, err := url.ParseQuery(string(body))
	var in slackInteraction
	if err == nil {
		err = json.Unmarshal([]byte(form.Get("payload")), &in)
	}
	if err != nil || in.Type != "block_actions" || len(in.Actions) == 0 {
		api.WriteProblem(w, http.StatusBadRequest, "bad_request", "Expected a block_actions payload.")
		return
	}
	act := in.Actions[0]
	var id string
	var approve bool
	if rest, ok := strings.CutPrefix(act.ActionID, slackApprovePrefix); ok {
		id, approve = rest, true
	} else if rest, ok := strings.CutPrefix(act.ActionID, slackDenyPrefix); ok {
		id = rest
	}
	if id == "" || !approval.ValidID(id) || (act.Value != "" && act.Value != id) {
		api.WriteProblem(w, http.StatusBadRequest, "bad_request", "The action is not an approval's Approve or Deny button.")
		return
	}
	p, ok := s.Users[in.User.ID]
	if !ok {
		s.failed(att, false, "Slack user not mapped to an approver; click refused", "slack_user_id", in.User.ID, "approval_id", id)
		api.WriteProblem(w, http.StatusForbidden, "unknown_user", "Your Slack account is not mapped to an approver.")
		return
	}
	a, ref := s.API.DecideAs(r.Context(), p, id, approve, "", slog.String("via", "slack"), slog.String("slack_user_id", in.User.ID))
	if ref != nil {
		if ref.Status != http.StatusServiceUnavailable {
			s.log().Warn("Slack decision refused", "slack_user_id", in.User.ID, "approver", p.Name, "approval_id", id, "code", ref.Code)
		}
		api.WriteProblem(w, ref.Status, ref.Code, ref.Detail)
		return
	}
	s.log().Info("approval decided in Slack", "approval_id", a.ID, "state", string(a.State), "by", p.Name, "slack_user_id", in.User.ID)
	w.WriteHeader(http.StatusOK)
}

// refuse answers a request that is not Slack's: a failed sign-in of its sender's address.
func (s *Interactions) refuse(w http.ResponseWriter, r *http.Request, att *throttle.Attempt, status int, code, detail, why string) {
	s.failed(att, true, "Slack interaction refused: "+why, "remote_addr", r.RemoteAddr)
	api.WriteProblem(w, status, code, detail)
}

// failed records a failed sign-in: logged and counted by the API's throttle (charged to the
// client's address when charge is set), or logged here without one.
func (s *Interactions) failed(att *throttle.Attempt, charge bool, why string, attrs ...any) {
	switch {
	case s.API.Throttle == nil:
		s.log().Warn(why, attrs...)
	case charge:
		att.Fail(why, attrs...)
	default:
		att.FailUncharged(why, attrs...)
	}
}
