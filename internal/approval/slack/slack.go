// Package slack announces held requests in Slack, with Approve and Deny buttons, and takes the
// clicks: the Slack notifier (a notify.Notifier), its signed interactions endpoint, and the
// Slack users file that maps Slack members to approvers.
package slack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	slackapi "github.com/slack-go/slack"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/notify"
)

// Config configures a Slack notifier. Exactly one of BotToken (with Channel) and
// WebhookURL is set.
type Config struct {
	Name string
	// Channel is the channel ID or name the bot posts to.
	Channel string
	// BotToken (xoxb-...) posts with chat.postMessage and updates the message with chat.update
	// once the request is decided.
	BotToken string
	// WebhookURL is an incoming webhook. A webhook cannot update what it posted, so the
	// decision is a second message.
	WebhookURL string
	// SigningSecret verifies the app's button clicks (Interactions). Without it the
	// message has no buttons and approvers decide through the approval API.
	SigningSecret string
	// APIURL is Slack's Web API base URL; empty means https://slack.com/api/.
	APIURL     string
	HTTPClient *http.Client
}

// Notifier announces held requests in a Slack channel as a Block Kit message with Approve and
// Deny buttons, and edits the message to say who decided.
type Notifier struct {
	name          string
	channel       string
	client        *slackapi.Client // with a bot token
	webhookURL    string           // or an incoming webhook
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

var _ notify.Notifier = (*Notifier)(nil)

// New returns a Slack notifier.
func New(c Config) (*Notifier, error) {
	switch {
	case c.BotToken != "" && c.WebhookURL != "":
		return nil, errors.New("slack: a bot token or a webhook URL, not both")
	case c.BotToken == "" && c.WebhookURL == "":
		return nil, errors.New("slack: a bot token or a webhook URL is required")
	case c.BotToken != "" && c.Channel == "":
		return nil, errors.New("slack: channel is required with a bot token")
	}
	if c.WebhookURL != "" {
		if u, err := url.Parse(c.WebhookURL); err != nil || !notify.AllowedURL(u) {
			return nil, errors.New("slack: the webhook URL must be https (or http to a loopback address)")
		}
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	s := &Notifier{name: c.Name, channel: c.Channel, webhookURL: c.WebhookURL, http: hc,
		signingSecret: c.SigningSecret, posted: map[string]slackPost{}}
	if c.BotToken != "" {
		opts := []slackapi.Option{slackapi.OptionHTTPClient(hc)}
		if c.APIURL != "" {
			opts = append(opts, slackapi.OptionAPIURL(strings.TrimSuffix(c.APIURL, "/")+"/"))
		}
		s.client = slackapi.New(c.BotToken, opts...)
	}
	return s, nil
}

// Name implements notify.Notifier.
func (s *Notifier) Name() string { return s.name }

// Announce implements notify.Notifier: it posts the request with Approve and Deny buttons; a
// burst of requests of one agent and rule is one message, the first with its buttons, saying
// how many more wait and which. What agents and approvers wrote is shown through
// approval.Visible: a bidi override or a zero-width space is a \u{XXXX} marker, not a character
// that acts.
func (s *Notifier) Announce(ctx context.Context, an notify.Announcement) error {
	a := an.Approval.Visible()
	blocks := slackRequestBlocks(a, s.signingSecret != "")
	text := slackEscape(fmt.Sprintf("Approval needed: %s %s%s (agent %s, approval %s)", a.Method, a.Host, clipText(a.Path, 200), a.Agent, a.ID))
	if n := an.Count(); n > 1 {
		blocks = slackBurstBlocks(blocks, a, an)
		text += slackEscape(fmt.Sprintf(", and %d more requests of the agent under rule %s", n-1, a.Rule))
	}
	if s.client == nil {
		return s.webhook(ctx, text, blocks)
	}
	channel, ts, err := s.client.PostMessageContext(ctx, s.channel, slackapi.MsgOptionText(text, false), slackapi.MsgOptionBlocks(blocks...))
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

// Decided implements notify.Notifier: it edits the announcement to show the decision, without the
// buttons. When the message is not known (posted by another replica, or before a restart, or
// through a webhook) it posts the decision as a new message.
func (s *Notifier) Decided(ctx context.Context, a approval.Approval) error {
	a = a.Visible()
	blocks := slackDecidedBlocks(a)
	verb := "approved"
	if a.State == approval.Denied {
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
		_, _, _, err := s.client.UpdateMessageContext(ctx, p.channel, p.ts, slackapi.MsgOptionText(text, false), slackapi.MsgOptionBlocks(blocks...))
		var se slackapi.SlackErrorResponse
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
	_, _, err := s.client.PostMessageContext(ctx, s.channel, slackapi.MsgOptionText(text, false), slackapi.MsgOptionBlocks(blocks...))
	return slackError(err)
}

func (s *Notifier) webhook(ctx context.Context, text string, blocks []slackapi.Block) error {
	err := slackapi.PostWebhookCustomHTTPContext(ctx, s.webhookURL, s.http, &slackapi.WebhookMessage{Text: text, Blocks: &slackapi.Blocks{BlockSet: blocks}})
	if err == nil {
		return nil
	}
	err = slackError(err)
	// The webhook URL is a secret: keep it out of the logs.
	msg := strings.ReplaceAll(err.Error(), s.webhookURL, "[slack webhook URL]")
	if notify.IsPermanent(err) {
		return notify.Permanent(errors.New(msg))
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
	var rl *slackapi.RateLimitedError
	if errors.As(err, &rl) {
		return notify.RetryAfter(err, rl.RetryAfter)
	}
	var se slackapi.SlackErrorResponse
	if errors.As(err, &se) {
		if slackPermanent[se.Err] {
			return notify.Permanent(fmt.Errorf("slack: %w", err))
		}
		return fmt.Errorf("slack: %w", err)
	}
	var sc slackapi.StatusCodeError
	if errors.As(err, &sc) && !sc.Retryable() {
		return notify.Permanent(err)
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
func slackRequestBlocks(a approval.Approval, buttons bool) []slackapi.Block {
	blocks := []slackapi.Block{
		slackapi.NewHeaderBlock(plain(clipText("Approval needed: "+a.Method+" "+a.Host, slackHeaderMax))),
	}
	blocks = append(blocks, slackDetails(a)...)
	if buttons {
		approve := slackapi.NewButtonBlockElement(slackApprovePrefix+a.ID, a.ID, plain("Approve"))
		approve.Style = slackapi.StylePrimary
		approve.Confirm = slackapi.NewConfirmationBlockObject(plain("Approve this request?"),
			mrkdwn("The agent may then send this exact request once."), plain("Approve"), plain("Cancel"))
		deny := slackapi.NewButtonBlockElement(slackDenyPrefix+a.ID, a.ID, plain("Deny"))
		deny.Style = slackapi.StyleDanger
		blocks = append(blocks, slackapi.NewActionBlock(slackActionsPre+a.ID, approve, deny))
	}
	blocks = append(blocks, slackapi.NewContextBlock("", mrkdwn(fmt.Sprintf(
		"Approval `%s` · expires %s · or decide with `POST /v1/approvals/%s/approve` (or `/deny`)",
		a.ID, slackDate(a.ExpiresAt), a.ID))))
	return blocks
}

// slackBurstMax bounds the other requests of a burst an announcement names.
const slackBurstMax = 10

// slackBurstBlocks adds to blocks, the announcement of a (Visible), what its burst holds: how
// many requests the agent had held under the rule at once, and which, before the buttons.
func slackBurstBlocks(blocks []slackapi.Block, a approval.Approval, an notify.Announcement) []slackapi.Block {
	n := an.Count()
	more := fmt.Sprintf("*%d requests held at once* by this agent under rule %s: this one, with the buttons, and %d more, "+
		"waiting in the approvals console and API:", n, slackEscape(clipText(a.Rule, 200)), n-1)
	var lines []string
	for i, x := range an.Also {
		if i == slackBurstMax {
			break
		}
		x = x.Visible()
		lines = append(lines, "`"+x.ID+"` "+slackEscape(clipText(x.Method+" "+x.Host+x.Path, 200)))
	}
	if rest := n - 1 - len(lines); rest > 0 {
		lines = append(lines, fmt.Sprintf("and %d more", rest))
	}
	burst := []slackapi.Block{
		slackapi.NewSectionBlock(mrkdwn(clipText(more, slackTextMax)), nil, nil),
		slackapi.NewContextBlock("", mrkdwn(clipText(strings.Join(lines, "\n"), slackTextMax))),
	}
	// Before the buttons, if there are any, so that they stay last but for the footer.
	at := len(blocks) - 1
	if at > 0 && blocks[at-1].BlockType() == slackapi.MBTAction {
		at--
	}
	return append(blocks[:at:at], append(burst, blocks[at:]...)...)
}

// slackDecidedBlocks replaces the announcement once the request is decided.
func slackDecidedBlocks(a approval.Approval) []slackapi.Block {
	head, verb := "Approved: ", "Approved"
	if a.State == approval.Denied {
		head, verb = "Denied: ", "Denied"
	}
	blocks := []slackapi.Block{slackapi.NewHeaderBlock(plain(clipText(head+a.Method+" "+a.Host, slackHeaderMax)))}
	blocks = append(blocks, slackDetails(a)...)
	who := fmt.Sprintf("*%s by %s* %s", verb, slackEscape(clipText(a.DecidedBy, 200)), slackDate(a.DecidedAt))
	if a.Comment != "" {
		who += "\n>" + slackEscape(clipText(strings.ReplaceAll(a.Comment, "\n", " "), slackFieldMax))
	}
	if a.State == approval.Approved && !a.UseBy.IsZero() {
		who += "\nThe agent may send it once, until " + slackDate(a.UseBy) + "."
	}
	blocks = append(blocks, slackapi.NewSectionBlock(mrkdwn(who), nil, nil),
		slackapi.NewContextBlock("", mrkdwn("Approval `"+a.ID+"`")))
	return blocks
}

// slackDetails shows who asks, for what, under which rule. What the agent sent (the request
// line, the body) is rich text, which Slack shows literally: no formatting or links in it.
func slackDetails(a approval.Approval) []slackapi.Block {
	fields := []*slackapi.TextBlockObject{
		mrkdwn("*Agent*\n" + slackEscape(clipText(a.Agent, slackFieldMax-10))),
		mrkdwn("*Rule*\n" + slackEscape(clipText(a.Rule, slackFieldMax-10))),
		mrkdwn("*Approvers*\n" + slackEscape(clipText(strings.Join(a.Approvers, ", "), slackFieldMax-20))),
		mrkdwn("*Expires*\n" + slackDate(a.ExpiresAt)),
	}
	blocks := []slackapi.Block{
		slackapi.NewRichTextBlock("", slackapi.NewRichTextSection(
			slackapi.NewRichTextSectionTextElement(clipText(a.Method+" "+a.Host+a.Path, slackTextMax), &slackapi.RichTextSectionTextStyle{Code: true}))),
		slackapi.NewSectionBlock(nil, fields, nil),
	}
	if a.Reason != "" {
		blocks = append(blocks, slackapi.NewSectionBlock(mrkdwn("*Reason*\n"+slackEscape(clipText(a.Reason, slackTextMax-20))), nil, nil))
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
		blocks = append(blocks, slackapi.NewSectionBlock(mrkdwn(label), nil, nil),
			slackapi.NewRichTextBlock("", &slackapi.RichTextPreformatted{Type: slackapi.RTEPreformatted,
				Elements: []slackapi.RichTextSectionElement{slackapi.NewRichTextSectionTextElement(body, nil)}}))
	}
	return blocks
}

func plain(s string) *slackapi.TextBlockObject {
	return slackapi.NewTextBlockObject(slackapi.PlainTextType, s, false, false)
}

func mrkdwn(s string) *slackapi.TextBlockObject {
	return slackapi.NewTextBlockObject(slackapi.MarkdownType, s, false, true)
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
