package approval

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

	"github.com/slack-go/slack"
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
