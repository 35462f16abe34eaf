package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// Webhook signature headers.
const (
	// WebhookSignatureHeader is "sha256=" and the hex HMAC-SHA256 of the body under the secret.
	WebhookSignatureHeader = "X-Agentauthz-Signature"
	// WebhookTimestampHeader is when the event was sent, in Unix seconds (also in the signed
	// body as sent_at).
	WebhookTimestampHeader = "X-Agentauthz-Timestamp"
)

// WebhookEvent is what the webhook notifier POSTs, as JSON.
type WebhookEvent struct {
	// ID identifies the event across retries (the approval id and the type), for receivers to
	// deduplicate.
	ID string `json:"id"`
	// Type is approval.requested, approval.approved or approval.denied.
	Type string `json:"type"`
	// SentAt is when this attempt was sent; the signature covers it, so a receiver can refuse
	// old events.
	SentAt time.Time `json:"sent_at"`
	// Approval is the approval as approvers are shown it (approval.Approval.Visible): a
	// character that does not show as itself, such as a bidi override in what the agent sent,
	// is a \u{XXXX} marker.
	Approval approval.Approval `json:"approval"`
	// Held is, on an approval.requested event announcing a burst of requests of the same agent
	// and rule, how many it announces, Approval included; Also are the others (at most
	// MaxAlso), shown as Approval is. Absent for one request.
	Held int                 `json:"held,omitempty"`
	Also []approval.Approval `json:"also,omitempty"`
}

// WebhookConfig configures a webhook notifier.
type WebhookConfig struct {
	Name string
	// URL receives the events: https, or http to a loopback address.
	URL string
	// Secret keys the HMAC-SHA256 signature.
	Secret     string
	HTTPClient *http.Client
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time
}

// Webhook POSTs each event as signed JSON. A 2xx response is delivery; 408, 429 and 5xx (and a
// network failure) are retried; any other status is a permanent failure.
type Webhook struct {
	name   string
	url    string
	secret []byte
	http   *http.Client
	clock  func() time.Time
}

var _ Notifier = (*Webhook)(nil)

// NewWebhook returns a webhook notifier.
func NewWebhook(c WebhookConfig) (*Webhook, error) {
	u, err := url.Parse(c.URL)
	if err != nil || !AllowedURL(u) {
		return nil, fmt.Errorf("webhook: url %q must be https (or http to a loopback address)", c.URL)
	}
	if c.Secret == "" {
		return nil, errors.New("webhook: a secret is required")
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	// Never follow a redirect: a POST would become a GET elsewhere.
	nc := *hc
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	clock := c.Clock
	if clock == nil {
		clock = time.Now
	}
	return &Webhook{name: c.Name, url: c.URL, secret: []byte(c.Secret), http: &nc, clock: clock}, nil
}

// Name implements Notifier.
func (w *Webhook) Name() string { return w.name }

// Announce implements Notifier: one event for a burst.
func (w *Webhook) Announce(ctx context.Context, a Announcement) error {
	ev := WebhookEvent{Type: EventRequested, Approval: a.Approval}
	if a.Count() > 1 {
		ev.Held = a.Count()
		for _, x := range a.Also {
			ev.Also = append(ev.Also, x.Visible())
		}
	}
	return w.send(ctx, ev)
}

// Decided implements Notifier.
func (w *Webhook) Decided(ctx context.Context, a approval.Approval) error {
	return w.send(ctx, WebhookEvent{Type: eventOf(a), Approval: a})
}

// WebhookSignature is the X-Agentauthz-Signature of body under secret.
func WebhookSignature(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifyWebhookSignature reports, in constant time, whether sig is body's signature under
// secret: what a receiver does.
func VerifyWebhookSignature(secret, body []byte, sig string) bool {
	return hmac.Equal([]byte(sig), []byte(WebhookSignature(secret, body)))
}

// send signs and POSTs ev, its ID, SentAt and Approval (as approvers are shown it) filled in.
func (w *Webhook) send(ctx context.Context, ev WebhookEvent) error {
	now := w.clock().UTC().Truncate(time.Second)
	ev.ID, ev.SentAt, ev.Approval = ev.Approval.ID+":"+ev.Type, now, ev.Approval.Visible()
	body, err := json.Marshal(ev)
	if err != nil {
		return Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "agentauthz")
	req.Header.Set(WebhookSignatureHeader, WebhookSignature(w.secret, body))
	req.Header.Set(WebhookTimestampHeader, strconv.FormatInt(now.Unix(), 10))
	resp, err := w.http.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("webhook: %s answered %s: %s", w.url, resp.Status, strings.TrimSpace(string(snippet)))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
			return RetryAfter(err, time.Duration(s)*time.Second)
		}
		return err
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		return err
	default:
		return Permanent(err)
	}
}

// AllowedURL reports whether u may receive notifications: https, or http to a loopback address.
func AllowedURL(u *url.URL) bool {
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

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
