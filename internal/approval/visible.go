package approval

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Visible returns s as an approver may read it: every character that does not show as itself
// is replaced by a visible marker, \u{XXXX} (the code point in lower-case hex). That is control
// characters (escape sequences, carriage returns, line feeds), Unicode format characters
// (category Cf: the bidirectional embeddings, overrides and isolates U+202A–202E and
// U+2066–2069, the zero-width U+200B–200F, U+2060–2064, U+FEFF, ...), line and paragraph
// separators, other default-ignorable characters (Hangul fillers, variation selectors), code
// points that are private, unassigned or surrogates, and bytes that are not UTF-8 (each shown as
// \u{fffd}, as is U+FFFD itself). Tab and space stay.
//
// Agents write most of what approvers read (the path, the body), and "/users/42\u202e..."
// must not read as another request. Visible is the one escaping of every surface that shows
// agent-written text: the approvals API and console, Slack and webhook notifications, and the
// CLI. Its output is unchanged by Visible: escaping twice is escaping once.
func Visible(s string) string {
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if hidden(r) {
			break
		}
		i += n
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if !hidden(r) {
			b.WriteRune(r)
			continue
		}
		h := strconv.FormatInt(int64(r), 16)
		b.WriteString(`\u{`)
		if len(h) < 4 {
			b.WriteString("000"[len(h)-1:])
		}
		b.WriteString(h)
		b.WriteByte('}')
	}
	return b.String()
}

// VisibleText is Visible of each line of s: multi-line text (a body, a comment) keeps its line
// feeds.
func VisibleText(s string) string {
	if !strings.Contains(s, "\n") {
		return Visible(s)
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = Visible(l)
	}
	return strings.Join(lines, "\n")
}

// hidden reports whether r does not show as itself: what Visible escapes.
func hidden(r rune) bool {
	switch {
	case r == '\t':
		return false
	case r == utf8.RuneError:
		return true
	case r < 0x80:
		return r < 0x20 || r == 0x7f
	}
	// Not graphic: controls, format characters (Cf), separators (Zl, Zp), private use,
	// surrogates and unassigned code points.
	return !unicode.IsGraphic(r) ||
		unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector, unicode.Bidi_Control)
}

// Visible returns a with every field that agents or approvers wrote escaped by Visible (the
// body and comment by VisibleText): what approvers are shown. Ids, states, digests and times
// are the server's own.
func (a Approval) Visible() Approval {
	a.Agent, a.Rule, a.Reason = Visible(a.Agent), Visible(a.Rule), Visible(a.Reason)
	a.Condition = Visible(a.Condition)
	a.Method, a.Host, a.Path = Visible(a.Method), Visible(a.Host), Visible(a.Path)
	a.Body, a.ContentType = VisibleText(a.Body), Visible(a.ContentType)
	a.Approvers, a.Notify = visibleList(a.Approvers), visibleList(a.Notify)
	a.DecidedBy, a.Comment = Visible(a.DecidedBy), VisibleText(a.Comment)
	return a
}

// visibleList is Visible of each element, copied only if one changes.
func visibleList(l []string) []string {
	for i, s := range l {
		if v := Visible(s); v != s {
			out := append([]string(nil), l...)
			out[i] = v
			for j := i + 1; j < len(out); j++ {
				out[j] = Visible(out[j])
			}
			return out
		}
	}
	return l
}
