package slack

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// problemCode is the code of a problem answer.
func problemCode(body string) string {
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal([]byte(body), &p)
	return p.Code
}

// letterCase returns the hex of sig with the letters at the positions mask's bits name (the
// n-th letter for bit n) in upper case: the same bytes, spelt differently.
func letterCase(hexSig string, mask uint64) string {
	b := []byte(hexSig)
	n := 0
	for i, c := range b {
		if 'a' <= c && c <= 'f' {
			if mask&(1<<n) != 0 {
				b[i] = c - 'a' + 'A'
			}
			n++
		}
	}
	return string(b)
}

// letters counts the letters of a hex string.
func letters(s string) int {
	n := 0
	for _, c := range s {
		if 'a' <= c && c <= 'f' {
			n++
		}
	}
	return n
}

// TestSlackInteractionSignatureSpelling: a signature is accepted only as Slack writes it, "v0="
// and 64 lower-case hex digits, once, with one canonical timestamp; the same bytes spelt
// another way are refused before anything is decided, and the genuine click still works.
func TestSlackInteractionSignatureSpelling(t *testing.T) {
	fx := newSlackFixture(t)
	body, h := slackSigned(t, testSigningSecret, fx.now, "U0ALICE", "approve:"+fx.a.ID, fx.a.ID)
	sig := strings.TrimPrefix(h.Get("X-Slack-Signature"), "v0=")
	ts := h.Get("X-Slack-Request-Timestamp")
	resign := func(tsText string) string { // what the secret's holder would send with tsText
		m := hmac.New(sha256.New, []byte(testSigningSecret))
		m.Write([]byte("v0:" + tsText + ":" + body))
		return "v0=" + hex.EncodeToString(m.Sum(nil))
	}
	for _, tc := range []struct {
		name string
		edit func(h http.Header)
	}{
		{"upper-case hex", func(h http.Header) { h.Set("X-Slack-Signature", "v0="+strings.ToUpper(sig)) }},
		{"one letter upper-case", func(h http.Header) { h.Set("X-Slack-Signature", "v0="+letterCase(sig, 1)) }},
		{"V0=", func(h http.Header) { h.Set("X-Slack-Signature", "V0="+sig) }},
		{"no v0=", func(h http.Header) { h.Set("X-Slack-Signature", sig) }},
		{"trailing digit", func(h http.Header) { h.Set("X-Slack-Signature", "v0="+sig+"0") }},
		{"short", func(h http.Header) { h.Set("X-Slack-Signature", "v0="+sig[:62]) }},
		{"space", func(h http.Header) { h.Set("X-Slack-Signature", "v0= "+sig[1:]) }},
		{"two signatures", func(h http.Header) { h.Add("X-Slack-Signature", "v0="+sig) }},
		{"two timestamps", func(h http.Header) { h.Add("X-Slack-Request-Timestamp", ts) }},
		{"timestamp with a leading zero", func(h http.Header) {
			h.Set("X-Slack-Request-Timestamp", "0"+ts)
			h.Set("X-Slack-Signature", resign("0"+ts))
		}},
		{"timestamp with a sign", func(h http.Header) {
			h.Set("X-Slack-Request-Timestamp", "+"+ts)
			h.Set("X-Slack-Signature", resign("+"+ts))
		}},
	} {
		hv := h.Clone()
		tc.edit(hv)
		w := fx.do(slackHTTPRequest(body, hv))
		if w.Code != http.StatusUnauthorized || problemCode(w.Body.String()) != "bad_signature" {
			t.Errorf("%s: %d %s; want 401 bad_signature", tc.name, w.Code, w.Body)
		}
	}
	if st := fx.state(t); st != approval.Pending || len(fx.events.all()) != 0 {
		t.Fatalf("a respelt signature decided: %s, events %q", st, fx.events.all())
	}
	if w := fx.do(slackHTTPRequest(body, h)); w.Code != http.StatusOK || fx.state(t) != approval.Approved {
		t.Fatalf("the genuine click after its variants: %d %s", w.Code, w.Body)
	}
	if w := fx.do(slackHTTPRequest(body, h)); w.Code != http.StatusUnauthorized || problemCode(w.Body.String()) != "replayed" {
		t.Errorf("the genuine click again: %d %s; want 401 replayed", w.Code, w.Body)
	}
}

// TestSlackReplayFloodThenRealClick: an attacker holding one captured click floods the endpoint
// with it and with every spelling of its signature, more than the replay cache holds; the
// cache keeps one entry, and an approver's real click still decides.
func TestSlackReplayFloodThenRealClick(t *testing.T) {
	fx := newSlackFixture(t)
	b := notifyApproval("ops-slack")
	b.Digest = "another request"
	if _, _, err := fx.store.Hold(context.Background(), b, nil, approval.Limits{}, fx.now); err != nil {
		t.Fatal(err)
	}
	// A captured click whose signature has letters enough to spell it maxSlackSeen+ ways.
	var body string
	var h http.Header
	for at := fx.now; ; at = at.Add(-time.Second) {
		body, h = slackSigned(t, testSigningSecret, at, "U0ALICE", "approve:"+fx.a.ID, fx.a.ID)
		if letters(h.Get("X-Slack-Signature")[3:]) >= 15 {
			break
		}
	}
	if w := fx.do(slackHTTPRequest(body, h)); w.Code != http.StatusOK {
		t.Fatalf("the captured click, first sent: %d %s", w.Code, w.Body)
	}
	attacker := func(r *http.Request) *http.Request { r.RemoteAddr = "203.0.113.9:40000"; return r }
	sig := h.Get("X-Slack-Signature")[3:]
	counts := map[string]int{}
	for i := range 2*maxSlackSeen + 1000 {
		hv := h.Clone()
		if i%10 != 0 { // nine in ten respelt, one in ten as captured
			hv.Set("X-Slack-Signature", "v0="+letterCase(sig, uint64(i)))
		}
		w := fx.do(attacker(slackHTTPRequest(body, hv)))
		counts[strconv.Itoa(w.Code)+" "+problemCode(w.Body.String())]++
	}
	if len(counts) != 2 || counts["401 replayed"] == 0 || counts["401 bad_signature"] == 0 {
		t.Errorf("the flood was answered %v; want only 401 replayed and 401 bad_signature", counts)
	}
	if n := fx.h.seen.size(); n != 1 {
		t.Errorf("the replay cache holds %d signatures after the flood; want the captured one", n)
	}
	// Slack delivers an approver's real click.
	r := slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "deny:"+b.ID, b.ID)
	r.RemoteAddr = "198.51.100.7:443"
	if w := fx.do(r); w.Code != http.StatusOK {
		t.Fatalf("a real click after the flood: %d %s", w.Code, w.Body)
	}
	if got, _ := fx.store.Get(context.Background(), b.ID, fx.now); got.State != approval.Denied || got.DecidedBy != "alice" {
		t.Errorf("the real click's approval: %s by %q", got.State, got.DecidedBy)
	}
	if ev := fx.events.all(); len(ev) != 2 {
		t.Errorf("decisions recorded: %q; want the captured click's and the real one", ev)
	}
}

// TestSlackReplayCacheFullStillTakesFreshClicks: with the cache full of genuine interactions, a
// fresh click still decides (the oldest seconds are forgotten), and a replay of one forgotten
// is refused, never accepted.
func TestSlackReplayCacheFullStillTakesFreshClicks(t *testing.T) {
	fx := newSlackFixture(t)
	fx.h.seen.max = 5
	var sent [][2]any
	for i := range 5 { // mallory's clicks, a minute to a second old: signed, remembered, refused
		body, h := slackSigned(t, testSigningSecret, fx.now.Add(-time.Duration(60-i)*time.Second), "U0MALLORY", "approve:"+fx.a.ID, fx.a.ID)
		if w := fx.do(slackHTTPRequest(body, h)); w.Code != http.StatusForbidden {
			t.Fatalf("mallory's click %d: %d %s", i, w.Code, w.Body)
		}
		sent = append(sent, [2]any{body, h})
	}
	if n := fx.h.seen.size(); n != 5 {
		t.Fatalf("cache holds %d", n)
	}
	if w := fx.do(slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "approve:"+fx.a.ID, fx.a.ID)); w.Code != http.StatusOK {
		t.Fatalf("a fresh click with the cache full: %d %s", w.Code, w.Body)
	}
	if n := fx.h.seen.size(); n != 5 {
		t.Errorf("cache holds %d, more than its bound", n)
	}
	for i, s := range sent {
		w := fx.do(slackHTTPRequest(s[0].(string), s[1].(http.Header)))
		if w.Code != http.StatusUnauthorized || problemCode(w.Body.String()) != "replayed" {
			t.Errorf("replay of mallory's click %d: %d %s; want 401 replayed", i, w.Code, w.Body)
		}
	}
}

func TestReplayCache(t *testing.T) {
	const window = 5 * time.Minute
	at := func(sec int64) time.Time { return time.Unix(sec, 0) }
	sig := func(i byte) signature { return signature{i} }
	var c replayCache

	// Once per signature, while its timestamp is in the window.
	if err := c.remember(sig(1), 1000, at(1000), window); err != nil {
		t.Fatal(err)
	}
	if err := c.remember(sig(1), 1000, at(1299), window); err != errReplayed {
		t.Fatalf("again within the window: %v", err)
	}
	// Entries leave with their timestamp's window.
	if err := c.remember(sig(2), 1400, at(1400), window); err != nil || c.size() != 1 {
		t.Fatalf("after the window: %v, %d remembered; want only the new one", err, c.size())
	}

	// Full: the oldest seconds before the new one's are forgotten, and refused from then on.
	c = replayCache{max: 3}
	for i := range int64(3) {
		if err := c.remember(sig(byte(10+i)), 2000+i, at(2002), window); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.remember(sig(20), 2003, at(2003), window); err != nil || c.size() != 3 {
		t.Fatalf("a fresh one when full: %v, %d remembered", err, c.size())
	}
	if err := c.remember(sig(10), 2000, at(2003), window); err != errReplayed {
		t.Errorf("the forgotten one again: %v; want errReplayed", err)
	}
	if err := c.remember(sig(21), 2000, at(2003), window); err != errReplayed {
		t.Errorf("a new one as old as the forgotten: %v; want errReplayed", err)
	}
	if err := c.remember(sig(22), 2001, at(2003), window); err != errBusy {
		t.Errorf("an old one, the cache full of newer ones: %v; want errBusy", err)
	}
	// Fresh clicks are always taken, however many.
	for i := range int64(100) {
		if err := c.remember(sig(byte(30+i)), 2004+i, at(2004+i), window); err != nil {
			t.Fatalf("fresh click %d: %v", i, err)
		}
		if c.size() > 3 {
			t.Fatalf("%d remembered, bound 3", c.size())
		}
	}
	// Several in one second, then a newer one: the whole second is forgotten.
	c = replayCache{max: 3}
	for i := range 3 {
		_ = c.remember(sig(byte(40+i)), 3000, at(3000), window)
	}
	if err := c.remember(sig(50), 3000, at(3000), window); err != errBusy {
		t.Errorf("a fourth in the same second: %v; want errBusy", err)
	}
	if err := c.remember(sig(50), 3001, at(3001), window); err != nil || c.size() != 1 {
		t.Errorf("the next second: %v, %d remembered", err, c.size())
	}
}
