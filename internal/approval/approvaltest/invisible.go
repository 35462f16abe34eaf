package approvaltest

import (
	"fmt"
	"strings"
	"testing"
)

// BidiAndZeroWidth are the characters an agent hides text with: the bidirectional embeddings,
// overrides and isolates (U+202A–202E, U+2066–2069), the zero-width and invisible format
// characters (U+200B–200F, U+2060–2064) and U+FEFF.
func BidiAndZeroWidth() []rune {
	var rs []rune
	for _, span := range [][2]rune{{0x202a, 0x202e}, {0x2066, 0x2069}, {0x200b, 0x200f}, {0x2060, 0x2064}} {
		for r := span[0]; r <= span[1]; r++ {
			rs = append(rs, r)
		}
	}
	return append(rs, 0xfeff)
}

// InvisibleRunes are characters that must never reach an approver as themselves, because they
// do not show as themselves: BidiAndZeroWidth and a sample of the other characters
// approval.Visible escapes (format characters, default-ignorable characters, separators,
// controls, private use) and U+FFFD. Every surface that shows agent-written text is tested with
// each.
func InvisibleRunes() []rune {
	return append(BidiAndZeroWidth(),
		0x061c,         // Arabic letter mark
		0x00ad,         // soft hyphen
		0x180e,         // Mongolian vowel separator
		0x034f,         // combining grapheme joiner
		0x3164,         // Hangul filler
		0xfe0f,         // variation selector 16
		0xe0041,        // tag latin capital letter A
		0x2028, 0x2029, // line and paragraph separators
		0x1b, 0x0d, 0x0a, 0x00, 0x7f, 0x85, // controls
		0xe000, // private use
		0xfffd, // the replacement character
	)
}

// Hostile is agent-written text with each of InvisibleRunes in it, each after a letter
// ("a\u202ab\u202b...").
func Hostile() string {
	var b strings.Builder
	for i, r := range InvisibleRunes() {
		b.WriteRune(rune('a' + i%26))
		b.WriteRune(r)
	}
	b.WriteString("z")
	return b.String()
}

// WantVisible fails t unless shown, what a surface shows of text that contained Hostile(), has
// none of InvisibleRunes in it, and the \u{XXXX} marker of each of BidiAndZeroWidth instead.
// (Some of the others may show another way: JSON writes a line feed in a string as \n.) With
// lines, shown is multi-line text, which keeps its line feeds.
func WantVisible(t testing.TB, what, shown string, lines bool) {
	t.Helper()
	for _, r := range InvisibleRunes() {
		if (lines && r == '\n') || !strings.ContainsRune(shown, r) {
			continue
		}
		t.Errorf("%s shows %U as itself: %+q", what, r, shown)
	}
	for _, r := range BidiAndZeroWidth() {
		if marker := fmt.Sprintf(`\u{%04x}`, r); !strings.Contains(shown, marker) {
			t.Errorf("%s lacks the marker %s: %+q", what, marker, shown)
		}
	}
}
