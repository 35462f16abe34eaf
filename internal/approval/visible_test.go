package approval_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/approvaltest"
)

func TestVisibleEscapesEachInvisibleCharacter(t *testing.T) {
	for _, r := range approvaltest.InvisibleRunes() {
		in := "/users/42" + string(r) + "/reset"
		want := fmt.Sprintf(`/users/42\u{%04x}/reset`, r)
		if got := approval.Visible(in); got != want {
			t.Errorf("Visible(%+q) = %+q, want %+q", in, got, want)
		}
		if got := approval.Visible(want); got != want {
			t.Errorf("Visible is not idempotent on %+q: %+q", want, got)
		}
	}
}

func TestVisibleKeepsWhatShows(t *testing.T) {
	for _, s := range []string{
		"", "/v1/users/jdoe/password-reset?x=1&y=%E2%80%AE", "ünïcødé — “quoted” 日本語 עברית العربية",
		"tab\tand space", `{"a": "\u202e escaped by JSON"}`, "emoji 👍 and ✓", `a literal \u{202e} marker`,
	} {
		if got := approval.Visible(s); got != s {
			t.Errorf("Visible(%+q) = %+q; want it unchanged", s, got)
		}
	}
}

func TestVisibleInvalidUTF8(t *testing.T) {
	if got, want := approval.Visible("a\xffb\xe2\x80"), `a\u{fffd}b\u{fffd}\u{fffd}`; got != want {
		t.Errorf("Visible = %q, want %q", got, want)
	}
}

func TestVisibleTextKeepsLines(t *testing.T) {
	in := "{\n  \"reason\": \"ok\u202e\u200b\"\n}"
	want := "{\n  \"reason\": \"ok\\u{202e}\\u{200b}\"\n}"
	if got := approval.VisibleText(in); got != want {
		t.Errorf("VisibleText = %q, want %q", got, want)
	}
	if got := approval.Visible(in); strings.Contains(got, "\n") {
		t.Errorf("Visible kept a line feed: %q", got)
	}
}

func TestApprovalVisible(t *testing.T) {
	const rlo = "\u202e"
	a := approval.Approval{ID: "apr_x", State: approval.Pending, Digest: "d", Agent: "spiffe://x/a" + rlo, Rule: "r" + rlo,
		Reason: "why" + rlo, Method: "POST" + rlo, Host: "h" + rlo, Path: "/p" + rlo, Body: "{\n\"b\": \"" + rlo + "\"\n}",
		ContentType: "application/json" + rlo, Approvers: []string{"group:a", "user:b" + rlo}, Notify: []string{"n" + rlo},
		DecidedBy: "alice" + rlo, Comment: "fine\n" + rlo}
	orig := append([]string(nil), a.Approvers...)
	v := a.Visible()
	for name, s := range map[string]string{"agent": v.Agent, "rule": v.Rule, "reason": v.Reason, "method": v.Method,
		"host": v.Host, "path": v.Path, "body": v.Body, "content_type": v.ContentType, "approvers": strings.Join(v.Approvers, ","),
		"notify": strings.Join(v.Notify, ","), "decided_by": v.DecidedBy, "comment": v.Comment} {
		if strings.Contains(s, rlo) || !strings.Contains(s, `\u{202e}`) {
			t.Errorf("%s shown as %+q", name, s)
		}
	}
	if v.Body != "{\n\"b\": \"\\u{202e}\"\n}" || v.Comment != "fine\n\\u{202e}" {
		t.Errorf("body %q, comment %q: lines not kept", v.Body, v.Comment)
	}
	if a.Approvers[1] != orig[1] {
		t.Errorf("Visible changed the approval's own list: %q", a.Approvers)
	}
}

func FuzzVisible(f *testing.F) {
	for _, r := range approvaltest.InvisibleRunes() {
		f.Add("x" + string(r) + "y")
	}
	f.Add("a\xffb")
	f.Fuzz(func(t *testing.T, s string) {
		v := approval.Visible(s)
		if !utf8.ValidString(v) {
			t.Fatalf("Visible(%q) = %q: not UTF-8", s, v)
		}
		for _, r := range v {
			if r != '\t' && (!unicode.IsGraphic(r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r)) {
				t.Fatalf("Visible(%q) = %q keeps %U", s, v, r)
			}
		}
		if approval.Visible(v) != v {
			t.Fatalf("Visible(Visible(%q)) changed it", s)
		}
	})
}
