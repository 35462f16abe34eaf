package approval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"
	"go.yaml.in/yaml/v3"
)

// SlackConfig configures a Slack notifier. Exactly one of BotToken (with Channel) and
// WebhookURL is set.
type SlackConfig struct {
	Name string
	// Channel is the channel ID or name the bot posts to.
	Channel string
	// BotToken (xoxb-...) posts with chat.postMessage and updates the message with chat.update
	// once the request is decided.
	BotToken string
	// WebhookURL is an incoming webhook. A webhook cannot update what it posted, so the
	// decision is a second message.
	WebhookURL string
	// SigningSecret verifies the app's button clicks (SlackInteractions). Without it the
	// message has no buttons and approvers decide through the approval API.
	SigningSecret string
	// APIURL is Slack's Web API base URL; empty means https://slack.com/api/.
	APIURL     string
	HTTPClient *http.Client
}

// Slack announces held requests in a Slack channel as a Block Kit message with Approve and
// Deny buttons, and edits the message to say who decided.
type Slack struct {
	name          string
	channel       string
	client        *slack.Client // with a bot token
	webhookURL    string        // or an incoming webhook
	http          *http.Client
	signingSecret string

	mu     sync.Mutex
	posted map[string]slackPost // approval id → the message announcing it
}

// slackPost is a message the bot posted, which it can update until the approval lapses.
type slackPost struct {
	channel, ts string
	until       time.Time
}

var _ Notifier = (*Slack)(nil)

// NewSlack returns a Slack notifier.
func NewSlack(c SlackConfig) (*Slack, error) {
	switch {
	case c.BotToken != "" && c.WebhookURL != "":
		return nil, errors.New("slack: a bot token or a webhook URL, not both")
	case c.BotToken == "" && c.WebhookURL == "":
		return nil, errors.New("slack: a bot token or a webhook URL is required")
	case c.BotToken != "" && c.Channel == "":
		return nil, errors.New("slack: channel is required with a bot token")
	}
	if c.WebhookURL != "" {
		if u, err := url.Parse(c.WebhookURL); err != nil || !allowedURL(u) {
			return nil, errors.New("slack: the webhook URL must be https (or http to a loopback address)")
		}
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	s := &Slack{name: c.Name, channel: c.Channel, webhookURL: c.WebhookURL, http: hc,
		signingSecret: c.SigningSecret, posted: map[string]slackPost{}}
	if c.BotToken != "" {
		opts := []slack.Option{slack.OptionHTTPClient(hc)}
		if c.APIURL != "" {
			opts = append(opts, slack.OptionAPIURL(strings.TrimSuffix(c.APIURL, "/")+"/"))
		}
		s.client = slack.New(c.BotToken, opts...)
	}
	return s, nil
}

// Name implements Notifier.
func (s *Slack) Name() string { return s.name }

// Announce implements Notifier: it posts the request with Approve and Deny buttons.
func (s *Slack) Announce(ctx context.Context, a Approval) error {
	blocks := slackRequestBlocks(a, s.signingSecret != "")
	text := slackEscape(fmt.Sprintf("Approval needed: %s %s%s (agent %s, approval %s)", a.Method, a.Host, clipText(a.Path, 200), a.Agent, a.ID))
	if s.client == nil {
		return s.webhook(ctx, text, blocks)
	}
	channel, ts, err := s.client.PostMessageContext(ctx, s.channel, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
	if err != nil {
		return slackError(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for id, p := range s.posted {
		if now.After(p.until) {
			delete(s.posted, id)
		}
	}
	s.posted[a.ID] = slackPost{channel: channel, ts: ts, until: a.ExpiresAt.Add(time.Hour)}
	return nil
}

// Decided implements Notifier: it edits the announcement to show the decision, without the
// buttons. When the message is not known (posted by another replica, or before a restart, or
// through a webhook) it posts the decision as a new message.
func (s *Slack) Decided(ctx context.Context, a Approval) error {
	blocks := slackDecidedBlocks(a)
	verb := "approved"
	if a.State == Denied {
		verb = "denied"
	}
	text := slackEscape(fmt.Sprintf("%s %s%s was %s by %s (approval %s)", a.Method, a.Host, clipText(a.Path, 200), verb, a.DecidedBy, a.ID))
	if s.client == nil {
		return s.webhook(ctx, text, blocks)
	}
	s.mu.Lock()
	p, ok := s.posted[a.ID]
	s.mu.Unlock()
	if ok {
		_, _, _, err := s.client.UpdateMessageContext(ctx, p.channel, p.ts, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
		var se slack.SlackErrorResponse
		if !errors.As(err, &se) || (se.Err != "message_not_found" && se.Err != "cant_update_message") {
			if err == nil {
				s.mu.Lock()
				delete(s.posted, a.ID)
				s.mu.Unlock()
			}
			return slackError(err)
		}
		// The message is gone: post the decision instead.
	}
	_, _, err := s.client.PostMessageContext(ctx, s.channel, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
	return slackError(err)
}

func (s *Slack) webhook(ctx context.Context, text string, blocks []slack.Block) error {
	err := slack.PostWebhookCustomHTTPContext(ctx, s.webhookURL, s.http, &slack.WebhookMessage{Text: text, Blocks: &slack.Blocks{BlockSet: blocks}})
	if err == nil {
		return nil
	}
	err = slackError(err)
	// The webhook URL is a secret: keep it out of the logs.
	msg := strings.ReplaceAll(err.Error(), s.webhookURL, "[slack webhook URL]")
	if IsPermanent(err) {
		return Permanent(errors.New(msg))
	}
	return errors.New(msg)
}

// slackPermanent are Slack API errors that retrying does not fix.
var slackPermanent = map[string]bool{
	"channel_not_found": true, "not_in_channel": true, "is_archived": true, "invalid_auth": true,
	"not_authed": true, "account_inactive": true, "token_revoked": true, "token_expired": true,
	"no_permission": true, "missing_scope": true, "invalid_blocks": true, "invalid_blocks_format": true,
	"msg_too_long": true, "restricted_action": true, "invalid_arguments": true, "ekm_access_denied": true,
	"team_access_not_granted": true, "not_allowed_token_type": true, "org_login_required": true,
	"invalid_payload": true, "no_service": true, "no_active_hooks": true, "action_prohibited": true,
	"posting_to_general_channel_denied": true, "channel_is_archived": true,
}

// slackError marks which of the Slack client's errors are permanent and which ask for a delay.
func slackError(err error) error {
	if err == nil {
		return nil
	}
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return &retryAfterError{err: err, after: rl.RetryAfter}
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		if slackPermanent[se.Err] {
			return Permanent(fmt.Errorf("slack: %w", err))
		}
		return fmt.Errorf("slack: %w", err)
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) && !sc.Retryable() {
		return Permanent(err)
	}
	return err
}

// Slack's limits on what a message carries.
const (
	slackHeaderMax  = 150
	slackFieldMax   = 2000
	slackTextMax    = 3000
	slackBodyMax    = 2800
	slackActionsPre = "agentauthz:"
)

// Action ids of the buttons: the verb and the approval id.
const (
	slackApprovePrefix = "approve:"
	slackDenyPrefix    = "deny:"
)

// slackRequestBlocks is the announcement of a held request.
func slackRequestBlocks(a Approval, buttons bool) []slack.Block {
	blocks := []slack.Block{
		slack.NewHeaderBlock(plain(clipText("Approval needed: "+a.Method+" "+a.Host, slackHeaderMax))),
	}
	blocks = append(blocks, slackDetails(a)...)
	if buttons {
		approve := slack.NewButtonBlockElement(slackApprovePrefix+a.ID, a.ID, plain("Approve"))
		approve.Style = slack.StylePrimary
		approve.Confirm = slack.NewConfirmationBlockObject(plain("Approve this request?"),
			mrkdwn("The agent may then send this exact request once."), plain("Approve"), plain("Cancel"))
		deny := slack.NewButtonBlockElement(slackDenyPrefix+a.ID, a.ID, plain("Deny"))
		deny.Style = slack.StyleDanger
		blocks = append(blocks, slack.NewActionBlock(slackActionsPre+a.ID, approve, deny))
	}
	blocks = append(blocks, slack.NewContextBlock("", mrkdwn(fmt.Sprintf(
		"Approval `%s` · expires %s · or decide with `POST /v1/approvals/%s/approve` (or `/deny`)",
		a.ID, slackDate(a.ExpiresAt), a.ID))))
	return blocks
}

// slackDecidedBlocks replaces the announcement once the request is decided.
func slackDecidedBlocks(a Approval) []slack.Block {
	head, verb := "Approved: ", "Approved"
	if a.State == Denied {
		head, verb = "Denied: ", "Denied"
	}
	blocks := []slack.Block{slack.NewHeaderBlock(plain(clipText(head+a.Method+" "+a.Host, slackHeaderMax)))}
	blocks = append(blocks, slackDetails(a)...)
	who := fmt.Sprintf("*%s by %s* %s", verb, slackEscape(clipText(a.DecidedBy, 200)), slackDate(a.DecidedAt))
	if a.Comment != "" {
		who += "\n>" + slackEscape(clipText(strings.ReplaceAll(a.Comment, "\n", " "), slackFieldMax))
	}
	if a.State == Approved && !a.UseBy.IsZero() {
		who += "\nThe agent may send it once, until " + slackDate(a.UseBy) + "."
	}
	blocks = append(blocks, slack.NewSectionBlock(mrkdwn(who), nil, nil),
		slack.NewContextBlock("", mrkdwn("Approval `"+a.ID+"`")))
	return blocks
}

// slackDetails shows who asks, for what, under which rule. What the agent sent (the request
// line, the body) is rich text, which Slack shows literally: no formatting or links in it.
func slackDetails(a Approval) []slack.Block {
	fields := []*slack.TextBlockObject{
		mrkdwn("*Agent*\n" + slackEscape(clipText(a.Agent, slackFieldMax-10))),
		mrkdwn("*Rule*\n" + slackEscape(clipText(a.Rule, slackFieldMax-10))),
		mrkdwn("*Approvers*\n" + slackEscape(clipText(strings.Join(a.Approvers, ", "), slackFieldMax-20))),
		mrkdwn("*Expires*\n" + slackDate(a.ExpiresAt)),
	}
	blocks := []slack.Block{
		slack.NewRichTextBlock("", slack.NewRichTextSection(
			slack.NewRichTextSectionTextElement(clipText(a.Method+" "+a.Host+a.Path, slackTextMax), &slack.RichTextSectionTextStyle{Code: true}))),
		slack.NewSectionBlock(nil, fields, nil),
	}
	if a.Reason != "" {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn("*Reason*\n"+slackEscape(clipText(a.Reason, slackTextMax-20))), nil, nil))
	}
	if a.Body != "" {
		label := "*Body*"
		if a.ContentType != "" {
			label += " (" + slackEscape(clipText(a.ContentType, 100)) + ")"
		}
		body := a.Body
		if len(body) > slackBodyMax {
			shown := clipText(body, slackBodyMax)
			body = shown + fmt.Sprintf("\n(%d more bytes not shown)", len(a.Body)-len(strings.TrimSuffix(shown, "…")))
		}
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(label), nil, nil),
			slack.NewRichTextBlock("", &slack.RichTextPreformatted{Type: slack.RTEPreformatted,
				Elements: []slack.RichTextSectionElement{slack.NewRichTextSectionTextElement(body, nil)}}))
	}
	return blocks
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, true)
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning to (links, mentions).
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// slackDate shows t in each reader's time zone, with UTC as the fallback.
func slackDate(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", t.Unix(), t.UTC().Format(time.RFC3339))
}

// clipText shortens s to at most n bytes, on a character boundary, ending in "…" if cut.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:max(n, 0)] + "…"
}

// SlackUsers maps Slack user ids to approvers, for the buttons of Slack messages. A click by a
// Slack user not in the map is refused.
type SlackUsers map[string]Approver

var slackUserID = regexp.MustCompile(`^[UW][A-Z0-9]{2,}$`)

// ReadSlackUsers reads a Slack users file (serve --slack-users), strictly, reporting every
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
func ReadSlackUsers(path string) (SlackUsers, error) {
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
	users := SlackUsers{}
	var problems []string
	for i, u := range f.SlackUsers {
		switch {
		case !slackUserID.MatchString(u.SlackUserID):
			problems = append(problems, fmt.Sprintf("slack_users[%d]: slack_user_id %q is not a Slack member ID (U… or W…)", i, u.SlackUserID))
		case u.Name == "":
			problems = append(problems, fmt.Sprintf("slack_users[%d]: name is empty", i))
		case isWorkload(u.Name):
			problems = append(problems, fmt.Sprintf("slack_users[%d]: %s is a workload identity; approvers are people", i, u.Name))
		case users[u.SlackUserID].Name != "":
			problems = append(problems, fmt.Sprintf("slack_users[%d]: %s is listed twice", i, u.SlackUserID))
		default:
			users[u.SlackUserID] = Approver{Name: u.Name, Groups: u.Groups}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
	}
	return users, nil
}

// SlackInteractionsPath is where Slack sends button clicks (the app's Interactivity Request URL).
const SlackInteractionsPath = "/v1/slack/interactions"

// slackWindow is how far a request's timestamp may be from now.
const slackWindow = 5 * time.Minute

// maxSlackBody bounds an interaction payload (it carries the whole message).
const maxSlackBody = 1 << 20

// maxSlackSeen bounds the replay cache.
const maxSlackSeen = 10000

// SlackInteractions is the endpoint for Slack's Approve and Deny buttons:
//
//	POST /v1/slack/interactions
//
// It accepts a request only if it carries Slack's v0 signature under the signing secret of a
// Slack notifier in force, made within 5 minutes, and not seen before. The clicking Slack user
// must be in Users and one of the approval's approvers; the decision then takes the approval
// API's path (the same store call, audit event with via=slack, and Decided hook). Anything
// else is refused with a 4xx and decides nothing.
type SlackInteractions struct {
	// API decides: its Store, Events, Log, Clock and Decided are used.
	API   *API
	Users SlackUsers
	// Secrets returns the signing secrets accepted (Dispatcher.SlackSigningSecrets).
	Secrets func() []string
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time
	Log   *slog.Logger

	mu   sync.Mutex
	seen map[string]time.Time // signatures accepted → when they leave the window
}

// Register adds the endpoint to mux.
func (s *SlackInteractions) Register(mux *http.ServeMux) {
	mux.Handle("POST "+SlackInteractionsPath, s)
}

func (s *SlackInteractions) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

func (s *SlackInteractions) log() *slog.Logger {
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
func (s *SlackInteractions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		problem(w, http.StatusMethodNotAllowed, "method_not_allowed", "POST Slack interactions here.")
		return
	}
	var secrets []string
	if s.Secrets != nil {
		secrets = s.Secrets()
	}
	if len(secrets) == 0 {
		problem(w, http.StatusNotFound, "not_found", "No Slack notifier with a signing secret is configured.")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSlackBody+1))
	if err != nil || len(body) > maxSlackBody {
		problem(w, http.StatusRequestEntityTooLarge, "too_large", "The interaction payload is too large.")
		return
	}
	now := s.now()
	ts, err := strconv.ParseInt(r.Header.Get("X-Slack-Request-Timestamp"), 10, 64)
	if err != nil {
		s.refuse(w, r, http.StatusUnauthorized, "bad_signature", "The request is not signed by Slack.", "no timestamp")
		return
	}
	sent := time.Unix(ts, 0)
	if d := now.Sub(sent); d > slackWindow || d < -slackWindow {
		s.refuse(w, r, http.StatusUnauthorized, "stale", "The request's timestamp is more than 5 minutes from now.", "stale timestamp")
		return
	}
	verified := false
	for _, secret := range secrets {
		v, err := slack.NewSecretsVerifier(r.Header, secret)
		if err != nil {
			continue
		}
		if _, err := v.Write(body); err == nil && v.Ensure() == nil {
			verified = true
			break
		}
	}
	if !verified {
		s.refuse(w, r, http.StatusUnauthorized, "bad_signature", "The request is not signed by Slack.", "bad signature")
		return
	}
	switch s.remember(r.Header.Get("X-Slack-Signature"), sent.Add(slackWindow), now) {
	case errReplayed:
		s.refuse(w, r, http.StatusUnauthorized, "replayed", "This request was already received.", "replayed signature")
		return
	case errBusy:
		problem(w, http.StatusServiceUnavailable, "busy", "Too many Slack interactions; retry later.")
		return
	}

	form, err := url.ParseQuery(string(body))
	var in slackInteraction
	if err == nil {
		err = json.Unmarshal([]byte(form.Get("payload")), &in)
	}
	if err != nil || in.Type != "block_actions" || len(in.Actions) == 0 {
		problem(w, http.StatusBadRequest, "bad_request", "Expected a block_actions payload.")
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
	if id == "" || !ValidID(id) || (act.Value != "" && act.Value != id) {
		problem(w, http.StatusBadRequest, "bad_request", "The action is not an approval's Approve or Deny button.")
		return
	}
	p, ok := s.Users[in.User.ID]
	if !ok {
		s.log().Warn("Slack user not mapped to an approver; click refused", "slack_user_id", in.User.ID, "approval_id", id)
		problem(w, http.StatusForbidden, "unknown_user", "Your Slack account is not mapped to an approver.")
		return
	}
	a, ref := s.API.decideAs(r.Context(), p, id, approve, "", slog.String("via", "slack"), slog.String("slack_user_id", in.User.ID))
	if ref != nil {
		if ref.status != http.StatusServiceUnavailable {
			s.log().Warn("Slack decision refused", "slack_user_id", in.User.ID, "approver", p.Name, "approval_id", id, "code", ref.code)
		}
		problem(w, ref.status, ref.code, ref.detail)
		return
	}
	s.log().Info("approval decided in Slack", "approval_id", a.ID, "state", string(a.State), "by", p.Name, "slack_user_id", in.User.ID)
	w.WriteHeader(http.StatusOK)
}

func (s *SlackInteractions) refuse(w http.ResponseWriter, r *http.Request, status int, code, detail, why string) {
	s.log().Warn("Slack interaction refused: "+why, "remote_addr", r.RemoteAddr)
	problem(w, status, code, detail)
}

var (
	errReplayed = errors.New("replayed")
	errBusy     = errors.New("busy")
)

// remember records a verified signature until it leaves the window, and says whether it was
// seen before.
func (s *SlackInteractions) remember(sig string, until, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]time.Time{}
	}
	if exp, ok := s.seen[sig]; ok && now.Before(exp) {
		return errReplayed
	}
	if len(s.seen) >= maxSlackSeen/2 {
		for k, exp := range s.seen {
			if !now.Before(exp) {
				delete(s.seen, k)
			}
		}
	}
	if len(s.seen) >= maxSlackSeen {
		return errBusy
	}
	s.seen[sig] = until
	return nil
}

// allowedURL reports whether u may receive notifications: https, or http to a loopback address.
func allowedURL(u *url.URL) bool {
	switch {
	case u.Host == "":
		return false
	case u.Scheme == "https":
		return true
	case u.Scheme == "http":
		return isLoopback(u.Hostname())
	}
	return false
}
